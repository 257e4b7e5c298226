"""A program the factory runs that is not installed is one line naming it and what to install: never a
traceback, never a verdict on the user's repository or pins."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import MakeRepo, run_cli

from imagefactory.home import Home


def only(tmp_path: Path, *programs: str) -> str:
    """A PATH holding just these programs (the real ones, linked)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in programs:
        found = shutil.which(name)
        assert found is not None, f"{name} is needed to run this test"
        (folder / name).symlink_to(found)
    return str(folder)


def test_without_git_a_bake_says_to_install_git(home: Home, make_repo: MakeRepo, tmp_path: Path) -> None:
    repo = make_repo({"requirements.txt": "six==1.16.0\n"}, name="nogit")
    done = run_cli(home, "bake", "--repo", repo.as_uri(), "--sandbox", "--api-only", PATH=only(tmp_path, "packer"))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == \
        "error: git is not installed (not found on PATH) (apt-get install git)"

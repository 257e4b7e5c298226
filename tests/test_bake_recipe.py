"""The recipe a bake uses: derived for its target's Python, written once even by concurrent first bakes,
and a derived default that follows the target."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MakeRepo, new_home

from imagefactory.checkouts import checkout
from imagefactory.cloud.target import python_default
from imagefactory.recipe import load_recipe
from imagefactory.recipe_commands import bake_recipe

RACER = """
import sys, time
from pathlib import Path
from imagefactory.checkouts import checkout
from imagefactory.cloud.target import python_default
from imagefactory.home import Home
from imagefactory.recipe_commands import bake_recipe

home, repo, go = Home(Path(sys.argv[1])), sys.argv[2], Path(sys.argv[3])
found = checkout(home, repo, ref=None, name=None, progress=lambda _: None)
while not go.exists():
    time.sleep(0.0005)
said = []
recipe, path, _ = bake_recipe(home, found, regions=None, python=None, default=python_default("sandbox"),
                              progress=said.append)
print("derived" if any("derived and wrote" in s for s in said) else "used", recipe.digest())
"""


def quiet(_: str) -> None:
    pass


def test_concurrent_first_bakes_write_the_recipe_once_and_read_it(make_repo: MakeRepo, tmp_path: Path) -> None:
    repo = make_repo({"requirements.txt": "six==1.16.0\nattrs\n"}, name="racy")
    home = new_home(tmp_path / "home")
    go = tmp_path / "go"
    env = {**os.environ, "IMAGEFACTORY_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(home.root), repo.as_uri(), str(go)], env=env,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    time.sleep(3.0)  # every racer has its checkout and waits for the start
    go.touch()
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outs.append(out.split())
    assert sorted(kind for kind, _ in outs) == ["derived", "used", "used", "used"]
    written = load_recipe(home.recipe_path("racy"))
    assert {digest for _, digest in outs} == {written.digest()}


def test_a_sandbox_bake_derives_the_sandbox_python_and_an_aws_bake_redefaults(
        make_repo: MakeRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEFACTORY_OFFLINE", "1")
    repo = make_repo({"requirements.txt": "six==1.16.0\nattrs\n"}, name="plain")
    home = new_home(tmp_path / "home")
    found = checkout(home, repo.as_uri(), ref=None, name=None, progress=quiet)
    said: list[str] = []
    recipe, path, _ = bake_recipe(home, found, regions=None, python=None, default=python_default("sandbox"),
                                  progress=said.append)
    assert recipe.environment.python.version == "3.11"
    assert load_recipe(path).environment.python.reason.startswith("the sandbox's own Python 3.11")
    assert any("the sandbox's own Python 3.11: nothing in the repository states a version" in s for s in said)
    on_aws, _, notes = bake_recipe(home, found, regions=None, python=None, default=python_default("aws"),
                                   progress=quiet)
    assert (on_aws.environment.python.version, on_aws.environment.python.source) == ("3.12", "default")
    assert any("another target's default" in n for n in notes)
    assert load_recipe(path).environment.python.version == "3.11", "the file is the user's: not rewritten"

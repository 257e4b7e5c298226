"""The factory home: `init` makes one (idempotent, never overwriting); outside any home every command that
needs one says in one line how to make it and writes nothing; --list, --help and init work anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from imagefactory import catalog
from imagefactory.catalog import Build

CONSOLE = [sys.executable, "-c", "from imagefactory.main import program; program.run()"]
INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(REPO_ROOT)]
NEEDS_HOME = (["catalog"], ["catalog.show", "x"], ["bake", "--repo", "."], ["recipe", "--repo", "."],
              ["recipe.check", "x"], ["launch", "x"], ["connect", "i-0123"], ["instances"], ["stop", "i-0123"],
              ["terminate", "i-0123", "--yes"], ["sandbox.up"], ["sandbox.status"], ["sandbox.down"])


def bare_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMAGEFACTORY_"))}
    return env | {"HOME": str(tmp / "user")}


def run(argv: list[str], cwd: Path, tmp: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=bare_env(tmp) | extra, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("args", NEEDS_HOME, ids=lambda a: a[0])
def test_outside_a_home_a_command_says_to_run_init_and_writes_nothing(empty: Path, args: list[str]) -> None:
    done = run([*CONSOLE, *args], empty, empty.parent)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: no factory home here") and "'imagefactory init'" in line
    assert "IMAGEFACTORY_HOME" in line and str(empty) in line
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize("args", [["--list"], ["--help"], ["bake", "--help"], ["--version"]])
def test_listing_and_help_work_anywhere(empty: Path, args: list[str]) -> None:
    done = run([*CONSOLE, *args], empty, empty.parent)
    assert done.returncode == 0 and done.stdout and done.stderr == ""
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize("program", [CONSOLE, INVOKE], ids=["imagefactory", "invoke"])
def test_init_makes_a_home_that_commands_then_find(empty: Path, program: list[str]) -> None:
    done = run([*program, "init"], empty, empty.parent)
    assert done.returncode == 0, done.stderr
    assert f"factory home {empty}: made catalog.yaml, recipes/, .gitignore" in done.stdout
    assert done.stderr.strip() == "note: next: imagefactory bake --repo PATH-OR-URL (or owner/name on GitHub)"
    assert catalog.load(empty / "catalog.yaml").images == {}
    assert (empty / "recipes").is_dir()
    assert (empty / ".gitignore").read_text().splitlines() == [".sandbox/", ".builds/", ".cache/", "*.lock",
                                                               "catalog.yaml.prev", "/classes/"]
    below = empty / "analysis" / "deep"
    below.mkdir(parents=True)
    assert json.loads(run([*CONSOLE, "catalog", "--json"], below, empty.parent).stdout) == []


def test_init_is_idempotent_and_never_overwrites(empty: Path) -> None:
    (empty / ".gitignore").write_text("data/\n.cache/")
    catalog.update(empty / "catalog.yaml", lambda c: catalog.record(
        c, name="kept", repo="r", recipe="recipes/kept.yaml", recipe_digest="d",
        build=Build(id="b1", created="2026-11-27T00:00:00Z", status="available", target="aws", account="1",
                    commit="abc", ref="main", recipe_digest="d", amis={"us-west-2": "ami-1"})))
    before = (empty / "catalog.yaml").read_bytes()
    first = run([*CONSOLE, "init", "--json"], empty, empty.parent)
    added = ".gitignore (.sandbox/, .builds/, *.lock, catalog.yaml.prev, /classes/)"
    assert json.loads(first.stdout) == {"home": str(empty), "created": ["recipes/", added]}
    assert (empty / "catalog.yaml").read_bytes() == before
    assert (empty / ".gitignore").read_text() == ("data/\n.cache/\n.sandbox/\n.builds/\n*.lock\ncatalog.yaml.prev\n"
                                                  "/classes/\n")
    again = run([*CONSOLE, "init"], empty, empty.parent)
    assert again.returncode == 0 and "already complete" in again.stdout
    assert f"skipped: {empty}: already a factory home; nothing changed" in again.stderr
    assert (empty / "catalog.yaml").read_bytes() == before
    assert (empty / ".gitignore").read_text() == ("data/\n.cache/\n.sandbox/\n.builds/\n*.lock\ncatalog.yaml.prev\n"
                                                  "/classes/\n")


def test_init_makes_the_folder_it_is_given(empty: Path) -> None:
    done = run([*CONSOLE, "init", "--dir", "new/home"], empty, empty.parent)
    assert done.returncode == 0, done.stderr
    assert (empty / "new" / "home" / "catalog.yaml").is_file() and (empty / "new" / "home" / "recipes").is_dir()


def test_init_makes_the_home_imagefactory_home_names(empty: Path) -> None:
    named = empty.parent / "named"
    done = run([*CONSOLE, "init"], empty, empty.parent, IMAGEFACTORY_HOME=str(named))
    assert done.returncode == 0, done.stderr
    assert (named / "catalog.yaml").is_file() and list(empty.iterdir()) == []
    listed = run([*CONSOLE, "catalog", "--json"], empty, empty.parent, IMAGEFACTORY_HOME=str(named))
    assert json.loads(listed.stdout) == []

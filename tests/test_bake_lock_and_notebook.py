"""Three claims proven by real sandbox bakes (one bake each, one shared home and emulator): a project with a
uv.lock is installed from the lock (issue 14 §3); a notebook marked run: true whose cell fails fails
the bake, naming the notebook and the cell (issue 15 §4); and a smoke check that fails while JupyterLab
starts in the background (80-smoke starts it first) fails the bake in its own one line, JupyterLab and the
kernel stopped."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import build_amis, git, home_processes, new_home, run_cli, stop_emulator, write_files

from imagefactory import catalog
from imagefactory.home import Home
from imagefactory.recipe import load_recipe, write_recipe
from imagefactory.recipe.model import Recipe
from imagefactory.recipe.resolve import find_uv
from imagefactory.sandbox.archive import image_path

pytestmark = pytest.mark.network  # uv lock, uv and apt install from the package indexes

PYPROJECT = """\
[project]
name = "locked-demo"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = [{spec}]

[dependency-groups]
dev = ["iniconfig"]

[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"
"""


def notebook(*sources: str) -> str:
    return json.dumps({"cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "outputs": [],
                                  "execution_count": None, "source": s} for i, s in enumerate(sources)],
                       "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def commit(repo: Path, files: dict[str, str]) -> Path:
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    write_files(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    return repo


def uv_lock(project: Path) -> None:
    subprocess.run([find_uv(), "lock", "--quiet", "--python", "3.11"], cwd=project, check=True, timeout=120,
                   env={**os.environ, "UV_NO_CONFIG": "1"})


@pytest.fixture(scope="module")
def lock_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    h = new_home(tmp_path_factory.mktemp("proofs") / "home")
    yield h
    stop_emulator(h)


@pytest.fixture(scope="module")
def locked_bake(lock_home: Home, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A uv project whose pyproject allows tabulate>=0.8 while its lock (made by `uv lock` for real, at the
    exact pin first, then relaxed: uv keeps the locked version) holds the older 0.8.10; a dev group in it."""
    project = tmp_path_factory.mktemp("uvproject") / "locked-demo"
    project.mkdir()
    write_files(project, {"pyproject.toml": PYPROJECT.format(spec='"tabulate==0.8.10"'),
                          "locked_demo/__init__.py": "from tabulate import tabulate\n"})
    uv_lock(project)
    (project / "pyproject.toml").write_text(PYPROJECT.format(spec='"tabulate>=0.8"'))
    uv_lock(project)
    lock = (project / "uv.lock").read_text()
    assert 'name = "tabulate"\nversion = "0.8.10"' in lock and 'name = "iniconfig"' in lock
    files = {p.relative_to(project).as_posix(): p.read_text() for p in project.rglob("*") if p.is_file()}
    repo = commit(tmp_path_factory.mktemp("repos") / "locked-demo", files)
    derived = run_cli(lock_home, "recipe", "--repo", str(repo), "--python", "3.11", "--json", check=True)
    done = run_cli(lock_home, "bake", "--repo", str(repo), "--sandbox", "--json", check=True, timeout=900)
    return {"derived": json.loads(derived.stdout), "result": json.loads(done.stdout)}


def test_a_uv_lock_is_derived_as_the_pipfile_and_said_to_be_installed_as_locked(locked_bake: dict) -> None:
    derived = locked_bake["derived"]
    assert derived["recipe"]["environment"]["pipfile"] == "uv.lock"
    used = {f["path"]: f["reason"] for f in derived["used"]}
    assert used["uv.lock"] == ("installed as locked: exported with 'uv export --frozen --no-emit-project' at build "
                               "time; 1 locked package (dev groups not installed)")


def test_the_kernel_env_holds_the_locked_version_and_not_the_dev_group(locked_bake: dict, lock_home: Home) -> None:
    build = catalog.load(lock_home.catalog_path("sandbox")).images["locked-demo"].latest_build()
    assert build is not None and build.status == "available" and build.image_manifest is not None
    packages = {p["name"].lower(): p["version"] for p in build.image_manifest["packages"]}
    assert packages["tabulate"] == "0.8.10", "the lock's version, not PyPI's newest (0.9.x)"
    assert "iniconfig" not in packages, "a dev-group dependency of the lock is not installed"
    assert packages["locked-demo"] == "0.1.0", "the project itself is installed (by 50-repo)"
    log = (Path(locked_bake["result"]["build_dir"]) / "packer.log").read_text()
    assert "converting uv.lock to requirements" in log


def test_catalog_show_tells_what_the_smoke_test_measured(locked_bake: dict, lock_home: Home) -> None:
    shown = json.loads(run_cli(lock_home, "catalog.show", "locked-demo", "--json", check=True).stdout)
    (build,) = shown["sandbox"]["builds"]
    assert build["smoke"] == {"imports": {"ok": 1, "failed": []}, "notebooks": []}  # tabulate, imported for real


FAILING = {
    "runtime.txt": "python-3.11\n",
    "notebooks/broken.ipynb": notebook("value = 41", "raise ValueError(f'cell two broke at {value + 1}')"),
}


@pytest.fixture(scope="module")
def failing_bake(lock_home: Home, tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    def run_the_notebook(data: dict[str, Any]) -> None:
        assert data["smoke"]["notebooks"] == [{"path": "notebooks/broken.ipynb", "run": False, "timeout": 600}]
        data["smoke"]["notebooks"][0]["run"] = True

    return bake_edited(lock_home, commit(tmp_path_factory.mktemp("repos") / "broken-notebook", FAILING),
                       "broken-notebook", run_the_notebook)


def bake_edited(h: Home, repo: Path, name: str,
                edit: Callable[[dict[str, Any]], None]) -> subprocess.CompletedProcess[str]:
    """Derive the repo's recipe, edit it (a dict, in place), and bake it in the sandbox (not checked)."""
    run_cli(h, "recipe", "--repo", str(repo), check=True)
    path = h.recipe_path(name)
    data = load_recipe(path).to_dict()
    edit(data)
    write_recipe(path, Recipe.from_dict(data), force=True)
    return run_cli(h, "bake", "--repo", str(repo), "--sandbox", timeout=900)


def test_a_failing_notebook_cell_fails_the_bake_naming_the_notebook_and_cell(
        failing_bake: subprocess.CompletedProcess[str], lock_home: Home) -> None:
    assert failing_bake.returncode == 1, failing_bake.stdout + failing_bake.stderr
    errors = [ln for ln in failing_bake.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, failing_bake.stderr
    (line,) = errors
    assert "notebooks/broken.ipynb" in line and "cell 2" in line and "ValueError: cell two broke at 42" in line
    (build,) = catalog.load(lock_home.catalog_path("sandbox")).images["broken-notebook"].builds
    assert build.status == "failed" and not build.amis
    assert build.error is not None
    assert "notebooks/broken.ipynb" in build.error and "cell 2" in build.error and "ValueError" in build.error
    assert build_amis(lock_home, build.id) == []
    assert not image_path(lock_home, build.id).exists()
    assert home_processes(lock_home) == []


@pytest.fixture(scope="module")
def failing_import_bake(lock_home: Home,
                        tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    repo = commit(tmp_path_factory.mktemp("repos") / "broken-import", {
        "runtime.txt": "python-3.11\n", "analysis.py": "import imagefactory_absent_q8z\n"})

    def fail_on_import(data: dict[str, Any]) -> None:  # the missing module fails the bake, not just a warning
        data.setdefault("smoke", {})["fail_on_import"] = "all"

    return bake_edited(lock_home, repo, "broken-import", fail_on_import)


def test_a_check_failing_while_jupyterlab_starts_fails_the_bake_in_its_own_line(
        failing_import_bake: subprocess.CompletedProcess[str], lock_home: Home) -> None:
    assert failing_import_bake.returncode == 1, failing_import_bake.stdout + failing_import_bake.stderr
    errors = [ln for ln in failing_import_bake.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, failing_import_bake.stderr
    assert "[80-smoke] the kernel env cannot import the recipe's packages or the code's imports" in errors[0]
    (build,) = catalog.load(lock_home.catalog_path("sandbox")).images["broken-import"].builds
    assert build.status == "failed" and not build.amis
    log = (Path(build.build_dir or "") / "packer.log").read_text()
    started = log.index("[80-smoke] JupyterLab and the kernel start (in the background")
    failed = log.index("smoke: code import imagefactory_absent_q8z (missing) FAILED")
    stopped = log.index("[80-smoke] JupyterLab and the kernel stopped (a check failed")  # "," is encoded there
    assert started < failed < stopped
    assert "smoke: JupyterLab answers /api/status" not in log, "the server check was stopped, not waited for"
    assert build_amis(lock_home, build.id) == []
    assert home_processes(lock_home) == []

"""Every environment-like file accounted for (used, or ignored with its reason), lock files installed as
locked, and a conda file beside a pip file decided from evidence. Fixture trees: tests/repos14/<case>/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import MakeRepo, load_module, run_cli
from conftest import simple_api_server as server_mod

from imagefactory.home import Home
from imagefactory.recipe import PackageIndex, PythonSpec, RepoTree, Source, derive
from imagefactory.recipe.accounting import kind
from imagefactory.recipe.pysearch import resolving_attempt
from imagefactory.recipe.pythons import Pythons
from imagefactory.recipe.resolve import find_uv

CASES = Path(__file__).parent / "repos14"
PACKER_FILES = Path(__file__).resolve().parent.parent / "packer" / "files"
PYTHONS = Pythons(tuple((f"3.{m}", f"3.{m}.9") for m in range(8, 16)), "a fixed list for the tests")
SRC = Source("https://example.org/r.git", None, "0" * 40)


@pytest.fixture
def server() -> Iterator[Any]:
    with server_mod.serve() as srv:
        yield srv


def case(name: str, tmp_path: Path, index: PackageIndex | None = None) -> Any:
    root = tmp_path / name
    shutil.copytree(CASES / name, root)
    tree = RepoTree.scan(root)
    attempt_for = None if index is None else (lambda env: resolving_attempt(env, tree, index, tmp_path / "search"))
    return derive(tree, name=name, source=SRC, pythons=PYTHONS, index=index, attempt_for=attempt_for)


def why(findings: Any) -> dict[str, str]:
    return {f.path: f.reason for f in findings}


def test_every_environment_like_file_is_used_or_ignored_with_a_reason(tmp_path: Path) -> None:
    d = case("every-file", tmp_path)
    used, ignored = why(d.used), why(d.ignored)
    assert set(used) == {"requirements.txt"}
    files = {p for p in RepoTree.scan(CASES / "every-file").files if kind(p)}
    assert files == set(used) | set(ignored)  # nothing dropped silently
    assert ignored["requirements-dev.txt"].startswith("development/test requirements: not installed in the image "
                                                      "(add '-r requirements-dev.txt' to requirements.txt")
    assert ignored["requirements.in"].startswith("pip-compile's input")
    assert ignored["environment-dev.yml"].startswith("a conda environment variant: only environment.yml")
    assert ignored[".devcontainer/devcontainer.json"].startswith("a dev container (VS Code / Codespaces)")
    assert ignored[".devcontainer/Dockerfile"].startswith("a dev container")
    assert ignored["docker/Dockerfile"].startswith("a Dockerfile: not used")
    assert ignored["docs/requirements.txt"] == "in docs/, a folder not used (configuration taken from the root)"
    assert ignored["yarn.lock"] == "another tool's lock file: not a Python environment"
    assert ignored["pixi.lock"].startswith("a pixi lock") and ignored["conda-lock.yml"].startswith("a conda-lock")
    report = d.report()
    assert all(path in report for path in files)


def test_a_uv_lock_is_installed_as_locked_and_said_so(tmp_path: Path) -> None:
    d = case("uv-project", tmp_path)
    env = d.recipe.environment
    assert env.pipfile == "uv.lock" and env.install_repo
    assert why(d.used)["uv.lock"].startswith("installed as locked: exported with 'uv export --frozen "
                                             "--no-emit-project' at build time")
    # attrs and six: the project's own dependencies; pytest and its own are the dev group's
    assert why(d.used)["uv.lock"].endswith("; 2 locked packages (dev groups not installed)")
    assert why(d.ignored)["pdm.lock"] == "uv.lock is installed; one lock file per recipe"
    assert d.recipe.environment.python.version == "3.15"  # requires-python >=3.10, the locked pins are pure


def test_a_poetry_lock_is_installed_as_locked(tmp_path: Path) -> None:
    d = case("poetry-project", tmp_path)
    assert d.recipe.environment.pipfile == "poetry.lock" and d.recipe.environment.install_repo
    assert why(d.used)["poetry.lock"].endswith("; 2 locked packages (dev groups not installed)")  # not pytest
    python = d.recipe.environment.python  # [tool.poetry.dependencies] python = "^3.10": >=3.10,<4
    assert (python.version, python.source) == ("3.15", "stated")
    assert "python >=3.10,<4 in pyproject.toml" in python.reason


def _converter() -> ModuleType:
    return load_module("if_pipfile", PACKER_FILES / "if_pipfile.py")


def test_the_build_turns_each_lock_into_pinned_requirements(monkeypatch: pytest.MonkeyPatch) -> None:
    convert = _converter().convert
    assert convert(str(CASES / "poetry-project" / "poetry.lock")) == [
        "six==1.16.0", 'colorama==0.4.6 ; sys_platform == "win32"']  # main group only, markers kept
    monkeypatch.setenv("PATH", f"{Path(find_uv()).parent}{os.pathsep}{os.environ['PATH']}")  # uv, as on the image
    assert convert(str(CASES / "uv-project" / "uv.lock")) == ["attrs==26.1.0", "six==1.16.0"]  # no dev group


def test_a_pip_file_covered_by_the_conda_file_is_ignored_as_repo2docker_does(tmp_path: Path) -> None:
    d = case("conda-pip-covered", tmp_path)
    env = d.recipe.environment
    assert env.conda == ("environment.yml",) and env.pip == ()
    assert why(d.ignored)["requirements.txt"] == (
        "covered by environment.yml: its 3 packages are all listed there (the same environment exported twice); "
        "environment.yml alone is installed, as repo2docker does")


def test_complementary_conda_and_pip_files_are_both_installed(tmp_path: Path) -> None:
    d = case("conda-pip-complementary", tmp_path)  # no resolver here: the names decide
    assert d.recipe.environment.pip == ("requirements.txt",)
    assert "environment.yml and requirements.txt are both installed: requirements.txt adds requests, which " \
           "environment.yml lacks" in d.notes


def test_a_pip_file_that_breaks_the_conda_environment_is_ignored_with_the_conflict(tmp_path: Path,
                                                                                   server: Any) -> None:
    index = PackageIndex(f"http://127.0.0.1:{server.server_port}/simple", cache_dir=tmp_path / "index")
    d = case("conda-pip-conflict", tmp_path, index)
    env = d.recipe.environment
    assert env.pip == () and env.python.version == "3.12"
    reason = why(d.ignored)["requirements.txt"]
    assert reason.startswith("with environment.yml it does not resolve at Python 3.12 (Because numpy==1.18.1 ")
    assert reason.endswith("while environment.yml alone does: environment.yml alone is installed")


# --- choosing among sub-folders ----------------------------------------------------------------------

def test_folders_are_ranked_by_names_and_contents(tmp_path: Path) -> None:
    d = case("folders-ranked", tmp_path)
    assert d.recipe.environment.conda == ("analysis/environment.yml",) and d.recipe.environment.pip == ()
    ignored = why(d.ignored)
    for imported in ("_import/requirements.txt", "dockers/train/requirements.txt", "docs/requirements.txt"):
        assert ignored[imported].startswith("analysis/ comes first: folders are ranked by name and contents")
    assert ignored["dockers/train/Dockerfile"].startswith("a Dockerfile: not used")
    assert not any("rank close" in n for n in d.notes)  # a clear winner: nothing to pick between


def test_close_folders_are_listed_with_their_files_and_how_to_pick_another(
        tmp_path: Path, make_repo: MakeRepo, home: Home) -> None:
    d = case("folders-close", tmp_path)
    assert d.recipe.environment.conda == ("env-cpu/environment.yml",)
    (note,) = [n for n in d.notes if "rank close" in n]
    assert note == ("env-cpu/ was chosen over folders that rank close to it: env-gpu/ (env-gpu/environment.yml); to "
                    "use another, derive with --folder (invoke recipe --repo ... --folder env-gpu --force), or edit "
                    "environment.conda / environment.pip in the recipe")
    files = {str(p.relative_to(CASES / "folders-close")): p.read_text()
             for p in (CASES / "folders-close").rglob("*") if p.is_file()}
    repo = make_repo(files, name="close")
    done = run_cli(home, "recipe", "--repo", repo.as_uri(), "--folder", "env-gpu", "--json", check=True,
                   IMAGEFACTORY_OFFLINE="1")
    assert json.loads(done.stdout)["recipe"]["environment"]["conda"] == ["env-gpu/environment.yml"]
    wrong = run_cli(home, "recipe", "--repo", repo.as_uri(), "--folder", "gpu", IMAGEFACTORY_OFFLINE="1")
    assert wrong.returncode == 1 and wrong.stderr.strip().splitlines()[-1] == (
        "error: --folder 'gpu': no such folder with files in the repository (pass one of: env-cpu/, env-gpu/)")


def test_the_corpus_bench_reports_each_checkout_and_drops_no_file(tmp_path: Path) -> None:
    bench = Path(__file__).resolve().parent.parent / "bench" / "recipe_corpus.py"
    done = subprocess.run([sys.executable, str(bench), str(CASES), "--offline", "--details",
                           "--cache-dir", str(tmp_path)], capture_output=True, text=True, timeout=120, check=True)
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["repo", "used", "ignored", "dropped", "python", "resolves", "derive", "s",
                                "resolve", "s"]
    table = lines[1:lines.index("")]  # the first table; the working-environment table follows the totals
    rows = {line.split()[0]: line.split() for line in table}
    assert rows["every-file"][1:4] == ["1", "10", "0"]
    assert "every-file: ignored requirements-dev.txt: development/test requirements" in done.stdout
    total = next(line for line in lines if " repos; derived " in line)
    assert total.startswith(f"{len(list(CASES.glob('*/')))} repos; derived ")
    assert "silently dropped 0;" in total and "total time" in total


def test_a_devcontainer_folder_with_requirements_ranks_before_docs(tmp_path: Path) -> None:
    for rel, text in {".devcontainer/requirements.txt": "numpy\n", ".devcontainer/devcontainer.json": "{}\n",
                      "docs/requirements.txt": "sphinx\n"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    d = derive(RepoTree.scan(tmp_path), name="dc", source=SRC, pythons=PYTHONS)
    assert d.recipe.environment.pip == (".devcontainer/requirements.txt",)
    assert why(d.ignored)["docs/requirements.txt"].startswith(".devcontainer/ comes first")


def test_the_resolve_check_resolves_a_uv_lock_as_the_build_installs_it(tmp_path: Path, server: Any) -> None:
    from imagefactory.recipe.resolve import resolve

    index = PackageIndex(f"http://127.0.0.1:{server.server_port}/simple")
    d = case("uv-project", tmp_path)
    recipe = d.recipe.with_python(PythonSpec("3.12", "override", "test"))
    result = resolve(recipe, RepoTree.scan(tmp_path / "uv-project"), index=index, timeout=60)
    assert not result.ok  # the recorded index has neither of the locked packages: uv was asked for them
    assert "attrs" in result.message or "six" in result.message, result.message
    assert "/simple/attrs/" in server.hits and "uv.lock not checked" not in result.message

"""Each detector and each precedence rule, on fixture repos made in temp dirs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from imagefactory.errors import RecipeError
from imagefactory.recipe import PostBuild, RepoTree, Source, derive

SRC = Source("https://example.org/repo.git", None, "0" * 40)
SETUP_PY = "from setuptools import setup\nsetup(name='x')\n"


def run(root: Path, files: dict[str, str]) -> Any:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return derive(RepoTree.scan(root), name="repo", source=SRC)


def why(findings: Any) -> dict[str, str]:
    return {f.path: f.reason for f in findings}


# --- apt.txt -----------------------------------------------------------------------------------------

def test_apt_names(tmp_path: Path) -> None:
    d = run(tmp_path, {"apt.txt": "# tools\nlibgdal-dev\ngit  # vcs\n\nlibc6:amd64\ngit\n"})
    assert d.recipe.environment.apt == ("libgdal-dev", "git", "libc6:amd64")


@pytest.mark.parametrize(("text", "line"), [
    ("git\nvim; curl x | sh\n", 2),
    ("vim curl\n", 1),
    ("git\n\nLibFoo\n", 3),
    ("gitx$(id)\n", 1),
])
def test_apt_bad_names_full_match(tmp_path: Path, text: str, line: int) -> None:
    with pytest.raises(RecipeError) as err:
        run(tmp_path, {"binder/apt.txt": text})
    assert err.value.message.startswith(f"binder/apt.txt:{line}:")


# --- postBuild, start, setup scripts -------------------------------------------------------------------

def test_postbuild_runs_and_start_recorded(tmp_path: Path) -> None:
    d = run(tmp_path, {"binder/postBuild": "#!/bin/bash\n", "binder/start": "#!/bin/bash\nexec \"$@\"\n",
                       "binder/requirements.txt": "numpy\n", "binder/install.sh": "echo\n", "tool.sh": "x"})
    env = d.recipe.environment
    assert env.post_build == (PostBuild("binder/postBuild", True), PostBuild("binder/install.sh", False))
    assert env.start == "binder/start"
    assert "tool.sh" not in why(d.used)


# --- runtime.txt ----------------------------------------------------------------------------------------

def test_runtime_r_not_yet_supported(tmp_path: Path) -> None:
    d = run(tmp_path, {"runtime.txt": "r-4.1-2021-10-01\n", "install.R": "install.packages('x')\n"})
    ignored = why(d.ignored)
    assert "not yet supported" in ignored["runtime.txt"] and "R kernels" in ignored["runtime.txt"]
    assert "not yet supported" in ignored["install.R"]
    assert d.recipe.environment.python.source == "default"


def test_runtime_garbage_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"^runtime.txt:2: 'python3.8'"):
        run(tmp_path, {"runtime.txt": "# comment\npython3.8\n"})


# --- unsupported families ----------------------------------------------------------------------------

def test_r_julia_dockerfile_reported_once_each(tmp_path: Path) -> None:
    d = run(tmp_path, {"DESCRIPTION": "Package: x\n", "Project.toml": "[deps]\n", "Dockerfile": "FROM x\n",
                       "requirements.txt": "numpy\n"})
    ignored = why(d.ignored)
    assert "R kernels are not installed yet" in ignored["DESCRIPTION"]
    assert "Julia kernels are not installed yet" in ignored["Project.toml"]
    assert "Packer" in ignored["Dockerfile"] and "not used" in ignored["Dockerfile"]
    assert sum(line.startswith("  Dockerfile") for line in d.report().splitlines()) == 1


# --- package files ---------------------------------------------------------------------------------

def test_environment_yml_plus_setup_py_both_installed(tmp_path: Path) -> None:
    d = run(tmp_path, {"environment.yml": "dependencies: [numpy]\n", "setup.py": SETUP_PY})
    env = d.recipe.environment
    assert env.conda == ("environment.yml",) and env.install_repo


def test_pyproject_without_project_table_is_not_a_package(tmp_path: Path) -> None:
    d = run(tmp_path, {"pyproject.toml": "[tool.black]\nline-length = 100\n", "setup.cfg": "[flake8]\n",
                       "requirements.txt": "numpy\n"})
    assert not d.recipe.environment.install_repo
    assert "not a package" in why(d.ignored)["pyproject.toml"]
    assert "setup.cfg" in why(d.ignored)


def test_pyproject_package(tmp_path: Path) -> None:
    d = run(tmp_path, {"pyproject.toml": "[build-system]\nrequires = ['hatchling']\n"})
    assert d.recipe.environment.install_repo
    assert not any("no environment file found" in n for n in d.notes)


# --- Pipfile -----------------------------------------------------------------------------------------

def test_pipfile_and_lock(tmp_path: Path) -> None:
    lock = '{"_meta": {"requires": {"python_version": "3.9"}}, "default": {"numpy": {"version": "==1.18.1"}}}'
    d = run(tmp_path, {"Pipfile": "[packages]\nnumpy = '==1.18.1'\n", "Pipfile.lock": lock,
                       "requirements.txt": "requests\n"})
    env = d.recipe.environment
    assert env.pipfile == "Pipfile.lock" and env.pip == ("requirements.txt",)
    assert env.python.version == "3.9"


def test_bad_pipfile_names_line(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"^Pipfile:2: TOML"):
        run(tmp_path, {"Pipfile": "[packages]\nnumpy = \n"})


# --- requirements.txt forms ------------------------------------------------------------------------

def test_requirements_includes_constraints_urls(tmp_path: Path) -> None:
    d = run(tmp_path, {
        "binder/requirements.txt": ("-r ../reqs/base.txt\n-c constraints.txt\n--extra-index-url https://x/simple\n"
                                    "git+https://github.com/o/r.git@v1#egg=r\nhttps://x.org/p-1.0.tar.gz\n-e .\n"),
        "reqs/base.txt": "numpy==1.18.1 --hash=sha256:abc\n", "binder/constraints.txt": "numpy<2\n",
    })
    used = why(d.used)
    assert used["reqs/base.txt"] == "requirements included by binder/requirements.txt line 1"
    assert used["binder/constraints.txt"].startswith("constraints included")
    assert d.recipe.environment.pip == ("binder/requirements.txt",)
    assert any("installs the repository itself" in n for n in d.notes)


@pytest.mark.parametrize(("text", "match"), [
    ("-r ../../etc/passwd\n", "requirements.txt:1: include '../../etc/passwd' points outside"),
    ("numpy\n-c nope.txt\n", "requirements.txt:2: included file 'nope.txt' does not exist"),
])
def test_requirements_include_errors(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(RecipeError) as err:
        run(tmp_path, {"requirements.txt": text})
    assert err.value.message.startswith(match)


def test_include_cycle_terminates(tmp_path: Path) -> None:
    d = run(tmp_path, {"requirements.txt": "-r a.txt\n", "a.txt": "-r requirements.txt\nnumpy\n"})
    assert d.recipe.environment.pip == ("requirements.txt",)


def test_environment_yml_pip_include(tmp_path: Path) -> None:
    d = run(tmp_path, {"environment.yml": "dependencies:\n  - pip\n  - pip:\n    - -r requirements-pip.txt\n",
                       "requirements-pip.txt": "requests==2.31.0\n"})
    assert "requirements-pip.txt" in why(d.used)


# --- layout precedence ------------------------------------------------------------------------------

def test_binder_beats_dot_binder(tmp_path: Path) -> None:
    d = run(tmp_path, {"binder/requirements.txt": "a\n", ".binder/requirements.txt": "b\n"})
    assert d.recipe.environment.pip == ("binder/requirements.txt",)
    assert "both exist" in why(d.ignored)[".binder/requirements.txt"]


def test_binder_root_package_ignored(tmp_path: Path) -> None:
    d = run(tmp_path, {"binder/environment.yml": "dependencies: [x]\n", "setup.py": SETUP_PY})
    assert not d.recipe.environment.install_repo
    assert "repo2docker" in why(d.ignored)["setup.py"]


def test_binder_without_env_file_searches_subfolders(tmp_path: Path) -> None:
    d = run(tmp_path, {"binder/apt.txt": "git\n", "requirements.txt": "ignored\n", "env/requirements.txt": "x\n"})
    env = d.recipe.environment
    assert env.apt == ("git",) and env.pip == ("env/requirements.txt",)


def test_search_order_named_folders(tmp_path: Path) -> None:
    d = run(tmp_path, {"ci/requirements.txt": "a\n", "conda/environment.yml": "dependencies: [b]\n",
                       "envs/environment.yml": "dependencies: [c]\n", "aaa/requirements.txt": "d\n"})
    assert d.recipe.environment.conda == ("envs/environment.yml",)
    assert d.recipe.environment.pip == ()
    ignored = why(d.ignored)
    assert set(ignored) == {"ci/requirements.txt", "conda/environment.yml", "aaa/requirements.txt"}
    assert all("envs/ comes first" in r for r in ignored.values())


def test_search_other_folders_shallowest_then_alphabetical(tmp_path: Path) -> None:
    d = run(tmp_path, {"a/deep/requirements.txt": "x\n", "zeta/requirements.txt": "y\n",
                       "beta/environment.yml": "dependencies: [z]\n", ".github/requirements.txt": "q\n"})
    assert d.recipe.environment.conda == ("beta/environment.yml",)
    ignored = why(d.ignored)
    assert set(ignored) == {"a/deep/requirements.txt", "zeta/requirements.txt", ".github/requirements.txt"}
    assert ignored[".github/requirements.txt"] == "in a hidden folder (.github/): not searched for environment files"


def test_package_root_searches_only_named_folders(tmp_path: Path) -> None:
    d = run(tmp_path, {"setup.py": SETUP_PY, "docs/requirements.txt": "sphinx\n"})
    env = d.recipe.environment
    assert env.install_repo and env.pip == ()
    d = run(tmp_path / "b", {"setup.py": SETUP_PY, "requirements/requirements.txt": "numpy\n"})
    assert d.recipe.environment.pip == ("requirements/requirements.txt",)
    assert d.recipe.environment.install_repo


def test_env_folder_with_both_files_and_root_runtime(tmp_path: Path) -> None:
    d = run(tmp_path, {"environment/environment.yml": "dependencies: [numpy]\n",
                       "environment/requirements.txt": "requests\n", "runtime.txt": "python-3.9\n",
                       "environment/environment.yaml": "dependencies: [x]\n"})
    env = d.recipe.environment
    assert env.conda == ("environment/environment.yml",) and env.pip == ("environment/requirements.txt",)
    assert env.python.version == "3.9"
    assert "only one conda environment file" in why(d.ignored)["environment/environment.yaml"]


def test_report_lists_used_ignored_python_and_notes(tmp_path: Path) -> None:
    d = run(tmp_path, {"binder/requirements.txt": "numpy\n", "Dockerfile": "FROM x\n", "runtime.txt": "python-3.9"})
    text = d.report()
    assert "Used:\n  binder/requirements.txt" in text
    assert "Ignored:" in text and "Dockerfile" in text and "runtime.txt" in text
    assert "Python: 3.12 (default)" in text
    assert "Notes:\n  - configuration taken from binder/" in text

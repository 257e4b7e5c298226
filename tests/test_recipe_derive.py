"""derive(): detection of pip and conda files, layout precedence, errors naming file and line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from imagefactory.errors import RecipeError
from imagefactory.recipe import RepoTree, Source, derive

SRC = Source("https://example.org/repo.git", "main", "0" * 40)


def make_repo(root: Path, files: dict[str, str]) -> RepoTree:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return RepoTree.scan(root)


def run(root: Path, files: dict[str, str], **kw: object):
    return derive(make_repo(root, files), name="repo", source=SRC, **kw)


def paths(findings) -> list[str]:
    return [f.path for f in findings]


def test_scan_lists_files_posix_without_git(tmp_path: Path) -> None:
    tree = make_repo(tmp_path, {"a/b.txt": "x", ".git/config": "x", "c": "y"})
    assert tree.files == ("a/b.txt", "c")
    assert tree.root == tmp_path.resolve()


def test_no_env_file_gives_default_recipe_with_note(tmp_path: Path) -> None:
    d = run(tmp_path, {"README.md": "hi", "analysis.py": "print(1)"})
    env = d.recipe.environment
    assert (env.python.version, env.python.source) == ("3.12", "default")
    assert env.pip == () and env.conda == ()
    assert any("no environment file found" in n for n in d.notes)
    assert "nothing: no environment file found" in d.report()


def test_root_requirements_used(tmp_path: Path) -> None:
    d = run(tmp_path, {"requirements.txt": "numpy==1.26.4\npandas>=2\n"})
    assert d.recipe.environment.pip == ("requirements.txt",)
    assert paths(d.used) == ["requirements.txt"]


def test_root_environment_yml_states_python(tmp_path: Path) -> None:
    d = run(tmp_path, {"environment.yml": "name: x\ndependencies:\n  - python=3.9\n  - numpy\n"})
    env = d.recipe.environment
    assert env.conda == ("environment.yml",)
    assert (env.python.version, env.python.source) == ("3.9", "stated")
    assert "environment.yml line 3" in env.python.reason


def test_environment_yaml_extension(tmp_path: Path) -> None:
    d = run(tmp_path, {"environment.yaml": "dependencies:\n  - numpy\n"})
    assert d.recipe.environment.conda == ("environment.yaml",)


@pytest.mark.parametrize("folder", ["binder", ".binder"])
def test_binder_folder_wins_and_root_is_reported_ignored(tmp_path: Path, folder: str) -> None:
    d = run(tmp_path, {f"{folder}/requirements.txt": "numpy\n", "requirements.txt": "pandas\n",
                       "environment.yml": "dependencies: [numpy]\n"})
    assert d.recipe.environment.pip == (f"{folder}/requirements.txt",)
    assert d.recipe.environment.conda == ()
    ignored = {f.path: f.reason for f in d.ignored}
    assert set(ignored) == {"requirements.txt", "environment.yml"}
    assert all("repo2docker" in r for r in ignored.values())


def test_environment_folder_searched_when_no_conventional_file(tmp_path: Path) -> None:
    d = run(tmp_path, {"environment/requirements.txt": "numpy\n", "src/x.py": ""})
    assert d.recipe.environment.pip == ("environment/requirements.txt",)
    assert any("chose environment/" in n for n in d.notes)


def test_requirements_and_environment_both_installed(tmp_path: Path) -> None:
    d = run(tmp_path, {"requirements.txt": "requests\n", "environment.yml": "dependencies:\n  - numpy\n"})
    env = d.recipe.environment
    assert env.conda == ("environment.yml",) and env.pip == ("requirements.txt",)


def test_detection_ignores_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "elsewhere"
    make_repo(other, {"requirements.txt": "pandas\n", "binder/environment.yml": "dependencies: [x]\n"})
    monkeypatch.chdir(other)
    d = run(tmp_path / "repo", {"requirements.txt": "numpy\n"})
    assert d.recipe.environment.pip == ("requirements.txt",)
    assert Path.cwd() == other
    assert os.getcwd() == str(other)


@pytest.mark.parametrize(("text", "line"), [
    ("name: x\ndependencies:\n  - numpy\n- oops\n", 4),
    ("name: x\ndependencies:\n  - numpy\n   - continued line\n", 3),
    ("- numpy\n- pandas\n", 1),
    ("name: x\ndependencies: numpy\n", 2),
    ("name: x\ndependencies:\n  - numpy\n  - 3.8\n", 4),
    ("name: x\ndependencies:\n  - numpy\n  - {conda: [x]}\n", 4),
    ("name: x\ndependencies:\n  - pip:\n    - requests\n    - numpy=1.2\n", 5),
])
def test_malformed_environment_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    with pytest.raises(RecipeError) as err:
        run(tmp_path, {"binder/environment.yml": text})
    assert err.value.message.startswith(f"binder/environment.yml:{line}:")


@pytest.mark.parametrize(("text", "line"), [
    ("numpy==1.0\nthis is not a requirement\n", 2),
    ("# comment\n\nnumpy=1.18\n", 3),
    ("--bogus-option x\n", 1),
    ("numpy\n-r missing.txt\n", 2),
])
def test_malformed_requirements_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    with pytest.raises(RecipeError) as err:
        run(tmp_path, {"requirements.txt": text})
    assert err.value.message.startswith(f"requirements.txt:{line}:")


def test_conda_like_requirement_gets_a_hint(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as err:
        run(tmp_path, {"requirements.txt": "numpy=1.18\n"})
    assert "conda" in err.value.hint


def test_to_dict_is_json(tmp_path: Path) -> None:
    d = run(tmp_path, {"requirements.txt": "numpy\n", "binder/requirements.txt": "x\n"})
    back = json.loads(json.dumps(d.to_dict()))
    assert back["recipe"]["environment"]["pip"] == ["binder/requirements.txt"]
    assert back["ignored"][0]["path"] == "requirements.txt"
    assert back["python"]["source"] == "default"


def test_regions_and_override(tmp_path: Path) -> None:
    d = run(tmp_path, {"environment.yml": "dependencies: [python=3.9]\n"}, regions=("eu-west-1",),
            python_override="3.11")
    assert d.recipe.image.regions == ("eu-west-1",)
    assert (d.recipe.environment.python.version, d.recipe.environment.python.source) == ("3.11", "override")

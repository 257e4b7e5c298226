"""smoke.py: what the image's smoke test imports, from the recipe's environment files as recipe/ parses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagefactory.errors import RecipeError
from imagefactory.recipe.model import Environment, PythonSpec, Recipe, Source
from imagefactory.recipe.tree import RepoTree
from imagefactory.smoke import smoke_packages


def recipe(**env: object) -> Recipe:
    return Recipe(name="demo", source=Source("https://example.org/r", "main", "a" * 40),
                  environment=Environment(python=PythonSpec("3.11", "stated", "runtime.txt"), **env))  # type: ignore[arg-type]


def tree(root: Path, files: dict[str, str]) -> RepoTree:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return RepoTree.scan(root)


def test_names_come_from_requirements_with_includes_conda_files_and_the_pipfile(tmp_path: Path) -> None:
    repo = tree(tmp_path, {
        "base.txt": "numpy==1.0  # pinned\n",
        "requirements.txt": "-r base.txt\n--index-url https://x\nrequests[socks]>=2 ; python_version>'3'\n"
                            "git+https://github.com/o/r.git\n-e .\n\nscikit-learn\nipykernel\n",
        "environment.yml": "name: x\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.9\n"
                           "  - conda-forge::pandas>=1\n  - r-base\n  - pip\n  - pip:\n    - seaborn==0.12\n",
        "Pipfile": '[packages]\nrich = "*"\nPyYAML = {version = "==6.0"}\n\n[dev-packages]\npytest = "*"\n',
    })
    found = smoke_packages(recipe(pip=("requirements.txt",), conda=("environment.yml",), pipfile="Pipfile"), repo)
    assert found == {"required": ["numpy", "requests", "scikit-learn", "seaborn", "rich", "pyyaml"],
                     "if_installed": ["pandas", "r-base"]}


def test_a_pipfile_lock_names_its_default_packages(tmp_path: Path) -> None:
    repo = tree(tmp_path, {"Pipfile.lock": json.dumps({"default": {"requests": {}}, "develop": {"pytest": {}}})})
    assert smoke_packages(recipe(pipfile="Pipfile.lock"), repo) == {"required": ["requests"], "if_installed": []}
    (tmp_path / "Pipfile.lock").write_text("{not json")
    with pytest.raises(RecipeError, match=r"Pipfile\.lock: cannot be read"):
        smoke_packages(recipe(pipfile="Pipfile.lock"), RepoTree.scan(tmp_path))

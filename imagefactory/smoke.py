"""What the image's smoke test imports: the distributions the recipe's environment files name, as recipe/
parses them (requirements with their includes, conda files and their pip sections, the Pipfile or its
lock). config.json carries the result (`smoke`); the image's if_smoke_imports.py only maps each name to
its import names with the installed metadata, and never parses an environment file itself.
"""

from __future__ import annotations

import json
import re
from typing import Any

from packaging.utils import canonicalize_name

from imagefactory.documents import clip, load_toml
from imagefactory.errors import RecipeError
from imagefactory.recipe.envfile import parse_environment
from imagefactory.recipe.model import Recipe
from imagefactory.recipe.requirements import follow, parse_requirements
from imagefactory.recipe.tree import RepoTree

# the environment's tooling, not the repo's packages: never imported by the smoke test
NOT_IMPORTED = frozenset({"python", "pip", "setuptools", "wheel", "ipykernel", "jupyter", "jupyterlab", "notebook",
                          "nodejs", "conda", "mamba", "nb-conda-kernels", "ipywidgets"})
CONDA_NAME = re.compile(r"(?:[\w.-]+::)?([A-Za-z0-9_][A-Za-z0-9_.-]*)")


def smoke_packages(recipe: Recipe, tree: RepoTree) -> dict[str, list[str]]:
    """{"required": names that must import, "if_installed": conda names, imported when they installed a
    Python distribution (many conda packages are not Python)}. Canonical names, each once, in file order."""
    env = recipe.environment
    required: list[str] = []
    conda: list[str] = []
    for rel in env.pip:
        required += follow(tree, rel, parse_requirements(tree.read_text(rel), rel)).names
    for rel in env.conda:
        parsed = parse_environment(tree.read_text(rel), rel)
        conda += [m.group(1) for spec in parsed.conda if (m := CONDA_NAME.match(spec))]
        required += follow(tree, rel, parsed.pip).names
    if env.pipfile:
        required += _pipfile_names(tree, env.pipfile)
    wanted = _unique(required)
    return {"required": wanted, "if_installed": [n for n in _unique(conda) if n not in wanted]}


def _pipfile_names(tree: RepoTree, rel: str) -> list[str]:
    """[packages] of a Pipfile, or `default` of a Pipfile.lock."""
    text = tree.read_text(rel)
    if rel.endswith(".lock"):
        try:
            data: Any = json.loads(text)
        except ValueError as exc:
            raise RecipeError(f"{rel}: cannot be read ({clip(exc)})", "regenerate it with pipenv") from None
    else:
        data = load_toml(text, rel)
    section = data.get("default" if rel.endswith(".lock") else "packages") if isinstance(data, dict) else None
    return list(section) if isinstance(section, dict) else []


def _unique(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        key = canonicalize_name(name)
        if key not in NOT_IMPORTED and key not in out:
            out.append(key)
    return out

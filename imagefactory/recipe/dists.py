"""The distributions a recipe's environment names: its requirement files (with their includes), its conda
files (conda names, and their pip sections), its Pipfile or lock, and its `packages`. Read, in file order,
as recipe/ parses them; used by the smoke test (`imagefactory.smoke`) and the import classification.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from imagefactory.documents import clip, load_toml
from imagefactory.errors import RecipeError
from imagefactory.recipe.envfile import parse_environment
from imagefactory.recipe.model import Recipe
from imagefactory.recipe.requirements import follow, parse_requirements
from imagefactory.recipe.tree import RepoTree

CONDA_NAME = re.compile(r"(?:[\w.-]+::)?([A-Za-z0-9_][A-Za-z0-9_.-]*)")
REQ_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Declared:
    pip: tuple[str, ...]     # pip distribution names (requirement files, conda pip sections, Pipfile, packages)
    conda: tuple[str, ...]   # conda package names (many are not Python distributions)


def declared(recipe: Recipe, tree: RepoTree) -> Declared:
    env = recipe.environment
    pip: list[str] = []
    conda: list[str] = []
    for rel in env.pip:
        pip += follow(tree, rel, parse_requirements(tree.read_text(rel), rel)).names
    for rel in env.conda:
        parsed = parse_environment(tree.read_text(rel), rel)
        conda += [m.group(1) for spec in parsed.conda if (m := CONDA_NAME.match(spec))]
        pip += follow(tree, rel, parsed.pip).names
    if env.pipfile:
        pip += _pipfile_names(tree, env.pipfile)
    pip += [m.group(0) for line in env.packages if (m := REQ_NAME.match(line))]
    return Declared(tuple(pip), tuple(conda))


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

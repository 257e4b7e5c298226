"""The recipe file (recipes/NAME.yaml): read and validate it, write it; comments and edits survive.

Reading goes through `imagefactory.documents` (bounded, no aliases, round trip for line numbers) and
`Recipe.from_dict` (the schema). `write_recipe` never silently overwrites: if the file exists and would
change, it returns the unified diff and leaves the file alone unless `force=True`. A forced rewrite
updates the existing YAML document in place, so comments stay wherever their key survives. New files get
a comment header whose first line, `# yaml-language-server: $schema=./recipe.schema.json`, points editors
(VS Code's YAML extension and others using yaml-language-server, which resolves a relative path against
the YAML file) at the schema the factory writes beside the recipes, `recipes/recipe.schema.json`: a file in
the home works offline, with no URL to publish, and is rewritten from the installed factory's schema
whenever a recipe is written, so it always matches the factory that reads the recipes.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from imagefactory.documents import HOME_LIMITS, dump_yaml, load_yaml
from imagefactory.errors import RecipeError
from imagefactory.files import atomic_write
from imagefactory.recipe.model import Recipe
from imagefactory.schemas import schema_text

SCHEMA_FILE = "recipe.schema.json"
MODELINE = f"# yaml-language-server: $schema=./{SCHEMA_FILE}\n"
HEADER = (MODELINE + "# Recipe derived by imagefactory from {repo}; edit freely.\n"
          "# Re-deriving shows a diff and keeps your edits unless you pass --force.\n"
          "# Fields and install order: recipes/README.md\n")


@dataclass(frozen=True)
class WriteResult:
    path: Path
    written: bool
    diff: str


def load_recipe(path: Path) -> Recipe:
    """Read and validate a recipe; errors name the file (and the line for YAML syntax errors)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read ({exc.strerror})", "check the recipe path") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path} is not UTF-8 text (at byte offset {exc.start})",
                          "save the recipe as UTF-8") from None
    return Recipe.from_dict(load_yaml(text, str(path), limits=HOME_LIMITS), origin=str(path))


def check_recipe(path: Path) -> Recipe:
    """Validate a recipe file; raises RecipeError naming the file, the field and the fix."""
    return load_recipe(path)


def render_recipe(recipe: Recipe, existing: str | None = None) -> str:
    """The YAML text for `recipe`: a fresh document with a header, or `existing` updated in place."""
    fresh = recipe.to_dict()
    if existing is not None:
        try:
            doc = load_yaml(existing, "existing recipe", limits=HOME_LIMITS)
        except RecipeError:
            doc = None
        if isinstance(doc, CommentedMap):
            _update(doc, fresh)
            return dump_yaml(doc)
    return HEADER.format(repo=_one_line(recipe.source.repo)) + dump_yaml(_to_yaml(fresh))


def write_recipe(path: Path, recipe: Recipe, *, force: bool = False) -> WriteResult:
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else None
    new = render_recipe(recipe, old)
    if old is None:
        _write(path, new)
        return WriteResult(path, True, "")
    diff = "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=f"{path} (yours)", tofile=f"{path} (derived)"))
    if not diff or not force:
        return WriteResult(path, False, diff)
    _write(path, new)
    return WriteResult(path, True, diff)


def _update(doc: CommentedMap, fresh: dict[str, Any]) -> None:
    """Make `doc` equal `fresh`, keeping the nodes (and their comments) of keys that survive."""
    for key in [k for k in doc if k not in fresh]:
        del doc[key]
    for index, (key, value) in enumerate(fresh.items()):
        if key not in doc:
            doc.insert(min(index, len(doc)), key, _to_yaml(value))
        elif isinstance(value, dict) and isinstance(doc[key], CommentedMap):
            _update(doc[key], value)
        elif _plain(doc[key]) != _plain(value):
            doc[key] = _to_yaml(value)


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _to_yaml(value: Any) -> Any:
    if isinstance(value, dict):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = _to_yaml(v)
        return out
    if isinstance(value, list):
        seq = CommentedSeq(_to_yaml(v) for v in value)
        if not value:
            seq.fa.set_flow_style()
        return seq
    return value


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _write(path: Path, text: str) -> None:
    """Write the recipe, and the schema its modeline names beside it when missing or out of date."""
    atomic_write(path, text)
    write_schema(path.parent)


def write_schema(folder: Path) -> Path:
    """`folder/recipe.schema.json` holding this factory's recipe schema (rewritten only when it differs)."""
    target = Path(folder) / SCHEMA_FILE
    text = schema_text("recipe")
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        atomic_write(target, text)
    return target

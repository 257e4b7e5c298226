"""The recipe commands: derive (and write, keeping the user's edits unless forced), and check
(validate, and optionally resolve the pip part for the recipe's Python with uv)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagefactory.errors import RecipeError
from imagefactory.home import Home
from imagefactory.recipe import Derivation, Recipe, RepoTree, Source, check_recipe, derive, write_recipe
from imagefactory.sourcing import checkout, package_index

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RecipeOutcome:
    name: str
    path: str
    written: bool
    diff: str
    derivation: Derivation

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "written": self.written, "diff": self.diff,
                **self.derivation.to_dict()}

    def text(self) -> str:
        lines = [self.derivation.report(), ""]
        if self.written:
            lines.append(f"wrote {self.path}")
        elif self.diff:
            lines += [f"{self.path} differs from a fresh derivation; kept yours (--force overwrites):", self.diff]
        else:
            lines.append(f"{self.path} is up to date")
        return "\n".join(lines)


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    path: str
    ok: bool
    message: str
    pins: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "ok": self.ok, "message": self.message, "pins": list(self.pins)}


def derive_for(home: Home, spec: str, *, ref: str | None, name: str | None, regions: tuple[str, ...] | None,
               progress: Progress) -> tuple[Derivation, Path]:
    """Check out `spec` and derive its recipe (not written). Returns it and the checkout path."""
    found = checkout(home, spec, ref=ref, name=name, progress=progress)
    source = Source(repo=found.url, ref=found.ref, commit=found.commit)
    derivation = derive(RepoTree.scan(found.path), name=found.name, source=source, regions=regions,
                        index=package_index(home))
    return derivation, found.path


def derive_recipe(home: Home, spec: str, *, ref: str | None = None, name: str | None = None, force: bool = False,
                  progress: Progress) -> RecipeOutcome:
    derivation, _ = derive_for(home, spec, ref=ref, name=name, regions=None, progress=progress)
    path = home.recipe_path(derivation.recipe.name)
    result = write_recipe(path, derivation.recipe, force=force)
    return RecipeOutcome(derivation.recipe.name, str(path), result.written, result.diff, derivation)


def resolve_check(home: Home, recipe: Recipe, tree_root: Path) -> CheckOutcome:
    from imagefactory.recipe.resolve import resolve

    result = resolve(recipe, RepoTree.scan(tree_root), index=package_index(home))
    return CheckOutcome(recipe.name, str(home.recipe_path(recipe.name)), result.ok, result.message, result.pins)


def check(home: Home, name: str, *, resolve: bool, progress: Progress) -> CheckOutcome:
    path = home.recipe_path(name)
    if not path.exists():
        known = sorted(p.stem for p in home.recipes_dir.glob("*.yaml"))
        raise RecipeError(f"{path} does not exist", f"derive it with 'invoke recipe --repo ...'; "
                                                    f"recipes here: {', '.join(known) or 'none'}")
    recipe = check_recipe(path)
    if not resolve:
        return CheckOutcome(name, str(path), True, "valid")
    found = checkout(home, recipe.source.repo, ref=_ref_for(recipe), name=name, progress=progress)
    return resolve_check(home, recipe, found.path)


def _ref_for(recipe: Recipe) -> str | None:
    commit = recipe.source.commit
    return None if commit.startswith("dir-sha256:") else commit

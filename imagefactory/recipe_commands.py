"""The recipe commands: derive (and write, keeping the user's edits unless forced), and check
(validate, and optionally resolve the pip part for the recipe's Python with uv); and the recipe a bake
uses (`bake_recipe`): the user's file, or one derived for the bake's target and written once.

A recipe is written under a per-name lock (`.cache/locks/recipe-NAME.lock`): of two first bakes of one
repository, one derives and writes, the other waits and reads what was written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagefactory.checkouts import checkout
from imagefactory.errors import RecipeError, ResolveError
from imagefactory.files import locked
from imagefactory.home import Home
from imagefactory.package_index import for_home as package_index
from imagefactory.recipe import (
    Derivation,
    PythonSpec,
    Recipe,
    RepoTree,
    Source,
    check_recipe,
    derive,
    load_recipe,
    write_recipe,
)
from imagefactory.recipe.python import FACTORY_DEFAULT, PythonDefault, redefault
from imagefactory.recipe.syslibs import load_table
from imagefactory.repo import Checkout

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
               progress: Progress, add_missing: bool = False) -> tuple[Derivation, Path]:
    """Check out `spec` and derive its recipe (not written). Returns it and the checkout path."""
    found = checkout(home, spec, ref=ref, name=name, progress=progress)
    return _derive(home, found, regions, FACTORY_DEFAULT, add_missing), found.path


def _derive(home: Home, found: Checkout, regions: tuple[str, ...] | None, default: PythonDefault,
            add_missing: bool = False) -> Derivation:
    source = Source(repo=found.url, ref=found.ref, commit=found.commit)
    return derive(RepoTree.scan(found.path), name=found.name, source=source, regions=regions,
                  index=package_index(home), python_default=default, add_missing=add_missing,
                  system_table=load_table(home.root))


def recipe_lock(home: Home, name: str) -> Path:
    """What `files.locked` takes to guard recipes/NAME.yaml (its lock file lives in .cache/, not recipes/)."""
    return home.cache_dir / "locks" / f"recipe-{name}"


def derive_recipe(home: Home, spec: str, *, ref: str | None = None, name: str | None = None, force: bool = False,
                  add_missing: bool = False, progress: Progress) -> RecipeOutcome:
    """Derive and write recipes/NAME.yaml. `add_missing` adds the distributions found for the code's
    missing imports to `environment.packages`: of a fresh derivation, or of your existing recipe (only
    that field changes; your other edits and comments stay)."""
    derivation, _ = derive_for(home, spec, ref=ref, name=name, regions=None, progress=progress,
                               add_missing=add_missing)
    path = home.recipe_path(derivation.recipe.name)
    with locked(recipe_lock(home, derivation.recipe.name), what=f"recipe {path}"):
        if add_missing and path.exists() and not force and derivation.working is not None:
            yours = load_recipe(path)
            extra = tuple(d for d in derivation.working.packages_added if d not in yours.environment.packages)
            result = write_recipe(path, yours.with_packages((*yours.environment.packages, *extra)), force=True)
        else:
            result = write_recipe(path, derivation.recipe, force=force)
    return RecipeOutcome(derivation.recipe.name, str(path), result.written, result.diff, derivation)


def bake_recipe(home: Home, found: Checkout, *, regions: tuple[str, ...] | None, python: str | None,
                default: PythonDefault, progress: Progress) -> tuple[Recipe, Path, list[str]]:
    """The recipe for a bake: the user's recipes/NAME.yaml if it exists, else one derived with the
    target's Python `default` and written (both under the recipe's lock). A recipe whose Python is a
    derived default of another target gets this target's default (`redefault`); --regions and
    --python apply to this bake only."""
    path = home.recipe_path(found.name)
    source = Source(repo=found.url, ref=found.ref, commit=found.commit)
    notes: list[str] = []
    with locked(recipe_lock(home, found.name), what=f"recipe {path}"):
        if path.exists():
            recipe = load_recipe(path)
            if recipe.source.repo != found.url:
                raise RecipeError(f"{path}: field 'source.repo' is {recipe.source.repo!r}, not {found.url!r}",
                                  "pass --name to bake this repo under another image name")
            progress(f"recipe: using {path} (yours to edit; 'invoke recipe --repo ... --force' re-derives it)")
            recipe = recipe.with_source(source)
        else:
            derivation = _derive(home, found, regions, default)
            recipe = derivation.recipe
            write_recipe(path, recipe)
            notes.extend(derivation.notes)
            progress(f"recipe: derived and wrote {path}")
            for line in derivation.report().splitlines():
                progress(f"  {line}")
    moved = redefault(recipe.environment.python, default)
    if moved is not None:
        note = (f"recipe's Python {recipe.environment.python.version} is another target's default "
                f"(source: default); this bake uses {moved.reason.split(':')[0]} (set source: stated to keep it)")
        progress(f"recipe: {note}")
        notes.append(note)
        recipe = recipe.with_python(moved)
    if regions:
        recipe = recipe.with_regions(regions)
    if python:
        overridden = recipe.with_python(PythonSpec(python, "override", "--python given on the command line"))
        recipe = Recipe.from_dict(overridden.to_dict(), "--python")  # the override, validated like a recipe file
    return recipe, path, notes


def resolve_check(home: Home, recipe: Recipe, tree_root: Path) -> CheckOutcome:
    from imagefactory.recipe.resolve import resolve

    result = resolve(recipe, RepoTree.scan(tree_root), index=package_index(home))
    return CheckOutcome(recipe.name, str(home.recipe_path(recipe.name)), result.ok, result.message, result.pins)


def rehearsal(home: Home, recipe: Recipe, tree_root: Path) -> Callable[[str], str | None]:
    """For the sandbox preflight: resolve the recipe's pins at another Python (None: they resolve, else
    the first conflict). Nothing to resolve counts as resolving."""

    def rehearse(minor: str) -> str | None:
        at = recipe.with_python(PythonSpec(minor, "override", f"rehearsal at Python {minor}"))
        outcome = resolve_check(home, at, tree_root)
        return None if outcome.ok else outcome.message

    return rehearse


def check(home: Home, name: str, *, resolve: bool, progress: Progress) -> CheckOutcome:
    """Validate recipes/NAME.yaml and, with `resolve`, its pip packages; ResolveError names the first conflict."""
    path = home.recipe_path(name)
    if not path.exists():
        known = sorted(p.stem for p in home.recipes_dir.glob("*.yaml"))
        raise RecipeError(f"{path} does not exist", f"derive it with 'invoke recipe --repo ...'; "
                                                    f"recipes here: {', '.join(known) or 'none'}")
    recipe = check_recipe(path)
    if not resolve:
        return CheckOutcome(name, str(path), True, "valid")
    found = checkout(home, recipe.source.repo, ref=_ref_for(recipe), name=name, progress=progress)
    outcome = resolve_check(home, recipe, found.path)
    if not outcome.ok:
        raise ResolveError(f"{outcome.path}: {outcome.message}", "fix the pins or the Python version")
    return outcome


def _ref_for(recipe: Recipe) -> str | None:
    commit = recipe.source.commit
    return None if commit.startswith("dir-sha256:") else commit

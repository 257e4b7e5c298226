"""A working environment, not just the declared one: what derivation adds after the environment files.

`prove(tree, recipe, …)` scans the code's imports and classifies them for the recipe's Python
(`imagefactory.recipe.imports`), adds the system packages the recipe's distributions need
(`imagefactory.recipe.syslibs`, each with its reason) to `apt`, and lists the repository's notebooks
under `smoke.notebooks` with `run: false`. Missing imports are only reported (with the distribution that
provides them when one is found); `add_missing` puts those distributions into `environment.packages` —
`invoke recipe --add-missing` asks for it, nothing is added silently.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from imagefactory.recipe.dists import declared
from imagefactory.recipe.findings import Pin
from imagefactory.recipe.imports import KINDS, Imports, classify, find_providers, local_modules, scan
from imagefactory.recipe.index import IndexUnavailable, PackageIndex
from imagefactory.recipe.model import NotebookRun, Recipe
from imagefactory.recipe.syslibs import BuildsFromSource, SystemNeed, Table, apt_additions, bundled, needs
from imagefactory.recipe.tree import RepoTree
from imagefactory.recipe.wheels import fits, release


@dataclass(frozen=True)
class Working:
    imports: Imports
    system: tuple[SystemNeed, ...]
    apt_added: tuple[str, ...]
    notes: tuple[str, ...]
    packages_added: tuple[str, ...] = ()   # what add_missing put into environment.packages

    def report(self) -> list[str]:
        imp = self.imports
        counts = ", ".join(f"{len(imp.of(k))} {k}" for k in KINDS)
        lines = [f"Imports: {len(imp.uses)} modules in {imp.python_files} .py files and {len(imp.notebooks)} "
                 f"notebooks ({counts})"]
        for use in imp.of("missing"):
            firsts = _first_per_file(use.sites)
            shown = ", ".join(firsts[:3]) + (f" and {len(firsts) - 3} more files" if len(firsts) > 3 else "")
            add = f"add {use.provider}" if use.provider else "no distribution found"
            lines.append(f"  missing {use.module}: imported by {shown} - {add}")
        if self.packages_added:
            lines.append(f"  --add-missing: added {', '.join(self.packages_added)} to environment.packages")
        elif imp.addable():
            lines.append(f"  'invoke recipe --repo ... --add-missing' adds {', '.join(imp.addable())} to "
                         "environment.packages")
        if self.system:
            lines.append("System packages (apt):")
            lines += [f"  {', '.join(n.apt)}  for {n.dist}: {n.reason}" for n in self.system]
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"imports": self.imports.to_dict(), "system_packages": [n.to_dict() for n in self.system],
                "apt_added": list(self.apt_added), "packages_added": list(self.packages_added)}


def _first_per_file(sites: tuple[str, ...]) -> list[str]:
    """The first site of each file (`a.py:3`, `b.ipynb#cell 2`), in order."""
    seen: dict[str, str] = {}
    for site in sites:
        seen.setdefault(site.split("#")[0].rsplit(":", 1)[0], site)
    return list(seen.values())


def prove(tree: RepoTree, recipe: Recipe, *, pins: tuple[Pin, ...] = (), index: PackageIndex | None = None,
          table: Table | None = None, add_missing: bool = False) -> tuple[Recipe, Working]:
    """The recipe with system packages and notebooks added (and, with `add_missing`, the found
    distributions of missing imports), and what was found."""
    python = recipe.environment.python.version
    found = declared(recipe, tree)
    names = [*found.pip, *found.conda]
    imports = classify(scan(tree), python=python, dists=tuple(names), local=local_modules(tree))
    imports, notes = find_providers(imports, index)
    versions = {p.name: p.version for p in pins}
    dists = {canonicalize_name(n): versions.get(canonicalize_name(n)) for n in names}
    packages_added = imports.addable() if add_missing else ()
    if packages_added:
        recipe = recipe.with_packages((*recipe.environment.packages,
                                       *(d for d in imports.addable() if d not in recipe.environment.packages)))
        dists.update({canonicalize_name(d): None for d in imports.addable()})
        imports = replace(imports, uses=tuple(
            replace(u, kind="provided", reason=f"installed by {u.provider} (added by --add-missing)")
            if u.kind == "missing" and u.provider else u for u in imports.uses))
    system, sys_notes = needs(bundled() if table is None else table, dists, _source_check(index, python))
    added = apt_additions(recipe.environment.apt, system)
    env = replace(recipe.environment, apt=(*recipe.environment.apt, *added))
    listed = {n.path for n in recipe.smoke.notebooks}
    notebooks = (*recipe.smoke.notebooks, *(NotebookRun(p) for p in imports.notebooks if p not in listed))
    recipe = replace(recipe, environment=env, smoke=replace(recipe.smoke, notebooks=notebooks))
    return recipe, Working(imports, system, added, (*notes, *sys_notes), packages_added)


def _source_check(index: PackageIndex | None, python: str) -> BuildsFromSource | None:
    """Whether a distribution (at its pin, else any release) has no wheel for `python` on linux x86_64."""
    if index is None:
        return None

    def builds_from_source(dist: str, version: str | None) -> bool | None:
        try:
            files = index.files(dist)
        except IndexUnavailable:
            return None
        if files is None:
            return None
        if version is not None:
            rel = release(files, version)
            if rel is None:
                return None
            return not any(t.platform == "any" or fits(t, python) for t in rel.tags)
        wheels = [f for f in files if f.filename.endswith(".whl")]
        return not any(_fits_name(f.filename, python) for f in wheels)

    return builds_from_source


def _fits_name(filename: str, python: str) -> bool:
    try:
        tags = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return False
    return any(t.platform == "any" or fits(t, python) for t in tags)

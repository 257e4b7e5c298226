"""Derive a recipe from a repository tree: layout, then every detector, then the Python version.

Pure over its inputs: it reads files only under `tree.root` (no cwd, no chdir) and asks the network only
through `index` (None: not at all). The result says what was used, what was ignored and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from imagefactory.recipe.detect import DETECTORS
from imagefactory.recipe.findings import Detection, Finding, merge
from imagefactory.recipe.index import PackageIndex, redact
from imagefactory.recipe.layout import decide
from imagefactory.recipe.model import Environment, Recipe, Source
from imagefactory.recipe.python import FACTORY_DEFAULT, PythonDefault, choose
from imagefactory.recipe.syslibs import Table
from imagefactory.recipe.tree import RepoTree
from imagefactory.recipe.working import Working, prove


@dataclass(frozen=True)
class Derivation:
    recipe: Recipe
    used: tuple[Finding, ...]
    ignored: tuple[Finding, ...]
    notes: tuple[str, ...]
    working: Working | None = field(default=None)  # imports, system packages (imagefactory.recipe.working)

    def report(self) -> str:
        """The why-report: files used, files ignored and why, the Python version and its reason, notes."""
        py = self.recipe.environment.python
        lines = [f"Recipe '{self.recipe.name}' from {self.recipe.source.repo}"]
        lines += _section("Used", self.used, "(nothing: no environment file found)")
        lines += _section("Ignored", self.ignored, "(nothing)")
        lines.append(f"Python: {py.version} ({py.source}) - {py.reason}")
        if self.working is not None:
            lines += self.working.report()
        if self.notes:
            lines.append("Notes:")
            lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe.to_dict(),
            "used": [f.to_dict() for f in self.used],
            "ignored": [f.to_dict() for f in self.ignored],
            "python": self.recipe.to_dict()["environment"]["python"],
            "notes": list(self.notes),
            **(self.working.to_dict() if self.working is not None else {}),
        }


def _section(title: str, findings: tuple[Finding, ...], empty: str) -> list[str]:
    if not findings:
        return [f"{title}: {empty}"]
    width = max(len(f.path) for f in findings)
    return [f"{title}:"] + [f"  {f.path:<{width}}  [{f.kind}] {f.reason}" for f in findings]


def derive(tree: RepoTree, *, name: str, source: Source, regions: tuple[str, ...] | None = None,
           python_override: str | None = None, index: PackageIndex | None = None,
           python_default: PythonDefault = FACTORY_DEFAULT, add_missing: bool = False,
           system_table: Table | None = None) -> Derivation:
    """`python_default` is what the target builds when nothing states or infers a version; `add_missing`
    adds the distributions found for the code's missing imports; `system_table` is the system-package
    table (None: the bundled one)."""
    layout = decide(tree)
    found = merge(tuple(detector(tree.at(layout.places)) for detector in DETECTORS))
    notes = [*layout.notes, *found.notes]
    if index is not None and found.index_urls:
        index = index.with_url(found.index_urls[0])
        notes.append(f"Python inference asks the index named in the requirements: {redact(index.url)}")
    python, py_notes = choose(found.python, found.pins, override=python_override, index=index,
                              default=python_default)
    notes += py_notes
    env = found.environment
    if not (env.conda or env.pip or env.pipfile or env.install_repo):
        notes.append(f"no environment file found: default recipe (Python {python.version}, "
                     "no pip or conda files)")
    recipe = Recipe(name=name, source=source, environment=_environment(found, python))
    if regions:
        recipe = recipe.with_regions(tuple(regions))
    # the working environment: the code's imports, system packages, notebooks (imagefactory.recipe.working)
    recipe, working = prove(tree, recipe, pins=found.pins, index=index, table=system_table, add_missing=add_missing)
    notes += working.notes
    recipe = Recipe.from_dict(recipe.to_dict(), origin=f"derived recipe '{name}'")
    return Derivation(recipe, found.used, (*layout.ignored, *found.ignored), tuple(notes), working)


def _environment(found: Detection, python: Any) -> Environment:
    return replace(found.environment, python=python)

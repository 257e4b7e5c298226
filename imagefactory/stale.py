"""`stale`: which images of a home's catalog are out of date, and every reason why.

Reads the catalog and the recipes, gathers the observations concurrently (`observations`) and decides
per image (`staleness.decide`, pure). `survey` is the part `rebuild` shares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imagefactory import catalog
from imagefactory.cloud.target import SANDBOX_NOTICE, Target, choose_target, open_target
from imagefactory.documents import HOME_LIMITS, load_yaml
from imagefactory.errors import FactoryError
from imagefactory.home import Home
from imagefactory.observations import Subject, effective_recipe, gather
from imagefactory.recipe import Rebuild, Recipe, load_recipe
from imagefactory.staleness import Verdict, decide

Progress = Callable[[str], None]


@dataclass(frozen=True)
class StaleReport:
    target: str
    catalog_path: str
    verdicts: tuple[Verdict, ...]

    @property
    def stale(self) -> list[str]:
        return [v.name for v in self.verdicts if v.status == "stale"]

    def to_dict(self) -> dict[str, Any]:
        return {"images": [v.to_dict() for v in self.verdicts], "stale": self.stale}

    def text(self) -> str:
        if not self.verdicts:
            return f"no images in {self.catalog_path}"
        width = max(len("IMAGE"), *(len(v.name) for v in self.verdicts))
        lines = [f"{'IMAGE':<{width}}  {'STATUS':<7}  LATEST BUILD"]
        for v in self.verdicts:
            how = " (incremental rebuild)" if v.incremental else ""
            lines.append(f"{v.name:<{width}}  {v.status:<7}  {v.latest or '-'}{how}")
            lines += [f"{'':<{width}}    {r.detail}" for r in v.reasons]
            lines += [f"{'':<{width}}    unknown {u.kind}: {u.detail}" for u in v.unknown]
        lines.append(f"{len(self.stale)} of {len(self.verdicts)} stale"
                     + (": invoke rebuild --stale" if self.stale else ""))
        return "\n".join(lines)


def stale(home: Home, names: tuple[str, ...] = (), *, sandbox: bool = False, progress: Progress = lambda _l: None,
          now: datetime | None = None) -> StaleReport:
    target = open_target(choose_target(sandbox=sandbox), home.emulator_dir)
    if target.sandbox:
        progress(SANDBOX_NOTICE.format(endpoint=target.endpoint, catalog=home.catalog_path("sandbox")))
    return StaleReport(target.kind, str(home.catalog_path(target.kind)), survey(home, target, names, now=now))


def survey(home: Home, target: Target, names: tuple[str, ...], *, now: datetime | None = None) -> tuple[Verdict, ...]:
    """The verdict of each named image (every image of the target's catalog when none is named)."""
    cat = catalog.load(home.catalog_path(target.kind))
    entries = [cat.image(n) for n in dict.fromkeys(names)] if names else [cat.images[n] for n in sorted(cat.images)]
    subjects: list[Subject] = []
    rebuilds: dict[str, Rebuild] = {}
    for entry in entries:
        latest = entry.latest_build()
        if latest is None:
            continue
        recipe, error = _recipe(home, entry.recipe)
        rebuilds[entry.name] = recipe.rebuild if recipe else Rebuild()
        subjects.append(Subject(entry, latest, effective_recipe(recipe, latest, target.kind) if recipe else None,
                                error))
    facts = gather(home, target, subjects) if subjects else {}
    when = now or datetime.now(UTC)
    return tuple(decide(e.name, e.latest_build(), e.builds[-1] if e.builds else None, facts.get(e.name),
                        rebuild=rebuilds.get(e.name, Rebuild()), now=when) for e in entries)


def _recipe(home: Home, recorded: str) -> tuple[Recipe | None, str | None]:
    path = Path(recorded) if Path(recorded).is_absolute() else home.root / recorded
    if not path.is_file():
        return None, f"the recipe {path} is gone"
    try:
        try:  # the fast loader first; a recipe that fails is read again for the line of its error
            text = path.read_text(encoding="utf-8")
            return Recipe.from_dict(load_yaml(text, str(path), limits=HOME_LIMITS, lines=False), str(path)), None
        except (FactoryError, OSError, UnicodeDecodeError):
            return load_recipe(path), None
    except FactoryError as exc:
        return None, " ".join(exc.message.split())[:300]

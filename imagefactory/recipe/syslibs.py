"""The system packages a recipe's Python packages need from the OS: a small documented table, applied.

Some distributions need a program or shared library no pip package brings: Graphviz's `dot` (graphviz,
pydot, pydotplus), `libGL.so.1` (opencv-python wheels), libmagic (python-magic), or, when they build from
source because no wheel fits the recipe's Python, GDAL/PROJ/GEOS/HDF5/netCDF headers. The bundled table is
`imagefactory/data/system_packages.json`; a factory home may add or replace entries in
`system-packages.yaml` (same format, `imagefactory/schemas/system_packages.schema.json`, validated on
every read). `needs` decides, purely, which entries apply to the recipe's distributions; derivation adds
their apt packages (each with its reason in the why-report) and the smoke test checks the named programs
and libraries exist in the image (`smoke_checks`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from imagefactory.documents import HOME_LIMITS, load_yaml
from imagefactory.errors import RecipeError
from imagefactory.schemas import check

HOME_FILE = "system-packages.yaml"


@dataclass(frozen=True)
class SystemNeed:
    dist: str
    apt: tuple[str, ...]
    programs: tuple[str, ...] = ()
    libraries: tuple[str, ...] = ()
    when: str = "always"
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"dist": self.dist, "apt": list(self.apt), "programs": list(self.programs),
                "libraries": list(self.libraries), "when": self.when, "reason": self.reason}


Table = dict[str, SystemNeed]


def _entries(data: dict[str, Any]) -> Table:
    return {canonicalize_name(name): SystemNeed(canonicalize_name(name), tuple(e["apt"]), tuple(e.get("programs", ())),
                                                tuple(e.get("libraries", ())), e.get("when", "always"), e["reason"])
            for name, e in data["packages"].items()}


def bundled() -> Table:
    text = resources.files("imagefactory").joinpath("data/system_packages.json").read_text(encoding="utf-8")
    data = json.loads(text)
    check(data, "system_packages", "imagefactory/data/system_packages.json", RecipeError)
    return _entries(data)


def load_table(home_root: Path | None) -> Table:
    """The bundled table, with the home's `system-packages.yaml` entries added (a same-named one wins)."""
    table = bundled()
    path = None if home_root is None else Path(home_root) / HOME_FILE
    if path is not None and path.is_file():
        data = load_yaml(path.read_text(encoding="utf-8"), str(path), limits=HOME_LIMITS)
        check(data, "system_packages", str(path), RecipeError)
        table.update(_entries(data))
    return table


# a distribution (canonical name) and its exact pin, or None -> whether it builds from source (None: unknown)
BuildsFromSource = Callable[[str, str | None], bool | None]


def needs(table: Table, dists: dict[str, str | None], builds_from_source: BuildsFromSource | None) \
        -> tuple[tuple[SystemNeed, ...], tuple[str, ...]]:
    """The table entries the recipe's distributions (`{canonical name: pinned version or None}`) need,
    in the distributions' order, and notes (a `when: source` entry that could not be decided)."""
    out: list[SystemNeed] = []
    notes: list[str] = []
    for dist, version in dists.items():
        need = table.get(canonicalize_name(dist))
        if need is None:
            continue
        if need.when == "source":
            source = builds_from_source(need.dist, version) if builds_from_source else None
            if source is None:
                notes.append(f"{dist}: {', '.join(need.apt)} not added (needed only if it builds from source, and "
                             "the package index was not asked); add them to apt if the install compiles it")
                continue
            if not source:
                continue
        out.append(need)
    return tuple(out), tuple(notes)


def apt_additions(current: tuple[str, ...], found: tuple[SystemNeed, ...]) -> tuple[str, ...]:
    """The apt packages `found` adds to `current`, each once, in order."""
    out: list[str] = []
    for need in found:
        out += [p for p in need.apt if p not in current and p not in out]
    return tuple(out)


def smoke_checks(table: Table, apt: tuple[str, ...]) -> dict[str, list[str]]:
    """The programs and libraries the image must hold: those of every table entry whose apt packages are
    all in the recipe's `apt` (installed, whoever added them)."""
    programs: list[str] = []
    libraries: list[str] = []
    have = {p.split("=")[0].split(":")[0] for p in apt}
    for need in table.values():
        if set(need.apt) <= have:
            programs += [p for p in need.programs if p not in programs]
            libraries += [lib for lib in need.libraries if lib not in libraries]
    return {"programs": programs, "libraries": libraries}

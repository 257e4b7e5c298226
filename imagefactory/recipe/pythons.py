"""The CPython minors a build can make, from data: what uv can install, cut by what the index has wheels for.

A kernel environment is made by `uv venv --python X.Y` (uv downloads that CPython), so the minors uv
lists as downloads for linux x86_64 (`uv python list --all-versions --only-downloads --output-format json`:
uv's own table, answered offline) are what can be built; only final releases count (no 3.16a1). The
package index then cuts the newest end: a minor for which the kernel's own compiled dependency (pyzmq,
under ipykernel) has no wheel yet would need a compiler in every image. An index that cannot be asked
leaves uv's list as it is. The answer is cached (`pythons.json` in a cache folder, a day).

`Pythons` also gives the newest patch of each minor: the resolver needs a full version (3.8 means 3.8.0).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from imagefactory.errors import FactoryError
from imagefactory.files import atomic_write
from imagefactory.recipe.index import IndexUnavailable, PackageIndex
from imagefactory.recipe.wheels import fits, parse_version, release

CONDA_FLOOR = "3.6"          # the oldest CPython conda-forge still serves for linux-64
KERNEL_COMPILED = "pyzmq"   # ipykernel's compiled dependency: its wheels decide the newest usable minor
TTL_S = 86400.0
UV_LIST = ("python", "list", "--all-versions", "--only-downloads", "--output-format", "json")


@dataclass(frozen=True)
class Pythons:
    """Buildable minors, oldest first, each with its newest patch release; `source` says where from."""

    patches: tuple[tuple[str, str], ...]     # (minor, newest patch), oldest minor first
    source: str

    @property
    def minors(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.patches)

    def patch(self, minor: str) -> str:
        return dict(self.patches).get(minor, f"{minor}.0")

    def span(self) -> str:
        return f"{self.minors[0]}–{self.minors[-1]}" if self.minors else "none"

    def nearest(self, minor: str) -> str:
        """The buildable minor closest to `minor` (the oldest for an older one, the newest for a newer)."""
        return self.minors[0] if _key(minor) < _key(self.minors[0]) else self.minors[-1]

    def for_conda(self) -> Pythons:
        """The Pythons of a recipe whose kernel env micromamba makes from conda-forge, which still builds the
        older minors uv no longer downloads (down to CONDA_FLOOR)."""
        older = [f"3.{m}" for m in range(_key(CONDA_FLOOR)[1], _key(self.minors[0])[1])] if self.minors else []
        if not older:
            return self
        return Pythons((*((m, f"{m}.99") for m in older), *self.patches),
                       f"{self.source}; older ones from conda-forge for a conda environment")

    def to_dict(self) -> dict[str, Any]:
        return {"patches": [list(p) for p in self.patches], "source": self.source}


def from_uv_list(data: Any) -> Pythons:
    """uv's download list (parsed JSON) -> the final CPython releases for linux x86_64 glibc, per minor."""
    newest: dict[str, Version] = {}
    for item in data if isinstance(data, list) else ():
        if not isinstance(item, dict) or item.get("implementation") != "cpython":
            continue
        if (item.get("os"), item.get("arch"), item.get("libc"), item.get("variant")) != \
                ("linux", "x86_64", "gnu", "default"):
            continue
        try:
            version = Version(str(item.get("version")))
        except InvalidVersion:
            continue
        if version.is_prerelease or version.major != 3:
            continue
        minor = f"3.{version.minor}"
        if minor not in newest or version > newest[minor]:
            newest[minor] = version
    patches = tuple((m, str(newest[m])) for m in sorted(newest, key=_key))
    return Pythons(patches, "the CPython releases uv can install")


def cut_by_wheels(pythons: Pythons, files: Any) -> tuple[Pythons, str | None]:
    """Drop the newest minors for which the newest release of the kernel's compiled dependency has no wheel.
    `files` is the index's answer for it (None/empty: nothing known, nothing cut). A note when it cuts."""
    if not isinstance(files, tuple) or not files:
        return pythons, None
    versions = sorted({v for f in files if (v := parse_version(f.filename)) is not None})
    newest = next((release(files, str(v)) for v in reversed(versions) if not v.is_prerelease), None)
    if newest is None or not newest.compiled:
        return pythons, None
    keep = list(pythons.patches)
    while keep and not any(fits(t, keep[-1][0]) for t in newest.tags):
        keep.pop()
    if len(keep) == len(pythons.patches) or not keep:
        return pythons, None
    dropped = ", ".join(m for m, _ in pythons.patches[len(keep):])
    note = (f"Python {dropped} left out: the package index has no {KERNEL_COMPILED} wheel for it yet "
            "(the kernel's ipykernel needs one)")
    return Pythons(tuple(keep), f"{pythons.source}, with {KERNEL_COMPILED} wheels on the package index"), note


def buildable(uv: str, *, index: PackageIndex | None, cache_dir: Path | None) -> tuple[Pythons, tuple[str, ...]]:
    """The buildable Pythons (and notes), asked of uv and the index once a day when `cache_dir` is given."""
    cached = _read_cache(cache_dir)
    if cached is not None:
        return cached, ()
    pythons = _ask_uv(uv)
    if not pythons.minors:
        raise FactoryError(f"{uv} lists no CPython it can install for linux x86_64 ('uv {' '.join(UV_LIST)}')",
                           "reinstall imagefactory (uv is one of its dependencies)")
    notes: tuple[str, ...] = ()
    if index is not None:
        try:
            files = index.files(KERNEL_COMPILED)
        except IndexUnavailable:
            files = None
        pythons, note = cut_by_wheels(pythons, files)
        notes = (note,) if note else ()
    if cache_dir is not None and pythons.minors:
        atomic_write(cache_dir / "pythons.json", json.dumps({"at": time.time(), **pythons.to_dict()}))
    return pythons, notes


@cache
def _ask_uv(uv: str) -> Pythons:
    from imagefactory.proc import MissingProgram, run

    try:
        done = run([uv, *UV_LIST], env={**os.environ, "NO_COLOR": "1"}, timeout=30, check=False)
    except MissingProgram:
        raise MissingProgram("uv") from None
    try:
        return from_uv_list(json.loads(done.stdout or "[]"))
    except ValueError:
        return Pythons((), "uv's Python list (unreadable)")


def _read_cache(cache_dir: Path | None) -> Pythons | None:
    if cache_dir is None:
        return None
    try:
        data = json.loads((cache_dir / "pythons.json").read_text())
        if time.time() - float(data["at"]) > TTL_S:
            return None
        return Pythons(tuple((str(m), str(p)) for m, p in data["patches"]), str(data["source"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _key(minor: str) -> tuple[int, ...]:
    return tuple(int(p) for p in minor.split("."))

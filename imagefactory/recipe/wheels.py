"""Which CPython minors a release's files serve on linux x86_64 (glibc up to 2.28, as the resolver targets).

A release is *compiled* when any of its wheels is platform-specific. A compiled release serves minor
3.M when one of its wheels is for CPython 3.M (cp3M-cp3M[m]), or abi3 built for 3.K <= 3.M, or a
py3/py3K (K <= M) wheel without ABI, on a manylinux/linux x86_64 platform. A release shipping only pure
wheels or only an sdist constrains the Python version only through its requires-python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from imagefactory.recipe.index import IndexFile
from imagefactory.recipe.pyversions import MINORS

GLIBC = (2, 28)
LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_x86_64")


@dataclass(frozen=True)
class Release:
    """The files of one version: their tags (wheels only), whether an sdist exists, requires-python."""

    tags: frozenset[Tag]
    sdist: bool
    requires_python: str | None

    @property
    def compiled(self) -> bool:
        return any(t.platform != "any" for t in self.tags)

    def minors(self) -> tuple[str, ...]:
        """Minors with a usable wheel (compiled releases only)."""
        return tuple(m for m in MINORS if any(fits(t, m) for t in self.tags))


def release(files: tuple[IndexFile, ...], version: str) -> Release | None:
    """The release `version` among `files`, or None when no file has that version."""
    want = Version(version)
    tags: set[Tag] = set()
    sdist, rp, found = False, None, False
    for f in files:
        parsed = _parse(f.filename)
        if parsed is None or parsed[0] != want:
            continue
        found = True
        tags |= parsed[1]
        sdist = sdist or not parsed[1]
        rp = rp or f.requires_python
    return Release(frozenset(tags), sdist, rp) if found else None


def _parse(filename: str) -> tuple[Version, frozenset[Tag]] | None:
    try:
        if filename.endswith(".whl"):
            _, version, _, tags = parse_wheel_filename(filename)
            return version, tags
        _, version = parse_sdist_filename(filename)
        return version, frozenset()
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


def platform_ok(platform: str) -> bool:
    if platform == "linux_x86_64":
        return True
    base = platform.removesuffix("_x86_64")
    if base in LEGACY:
        return LEGACY[base] <= GLIBC
    match = MANYLINUX.fullmatch(platform)
    return bool(match) and (int(match.group(1)), int(match.group(2))) <= GLIBC


def fits(tag: Tag, minor: str) -> bool:
    """Can CPython `minor` on linux x86_64 install a platform wheel with this tag?"""
    if tag.platform == "any" or not platform_ok(tag.platform):
        return False
    m = minor.replace(".", "")
    interp, abi = tag.interpreter, tag.abi
    if abi in (f"cp{m}", f"cp{m}m", f"cp{m}d"):
        return interp == f"cp{m}"
    if abi == "abi3":
        return interp.startswith("cp3") and _minor_no(interp) <= int(m[1:])
    if abi == "none":
        if interp in ("py3", f"cp{m}"):
            return True
        return interp.startswith("py3") and len(interp) > 3 and _minor_no(interp) <= int(m[1:])
    return False


def _minor_no(interp: str) -> int:
    digits = interp[3:]
    return int(digits) if digits.isdigit() else 99

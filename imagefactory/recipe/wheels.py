"""Which CPython minors a release's files serve on linux x86_64 (glibc up to 2.28, as the resolver targets).

Tag compatibility is `packaging.tags`' (the rules pip installs by), asked for each minor on these platforms.

A release is *compiled* when any of its wheels is platform-specific. A compiled release serves minor
3.M when one of its wheels is for CPython 3.M (cp3M-cp3M[m]), or abi3 built for 3.K <= 3.M, or a
py3/py3K (K <= M) wheel without ABI, on a manylinux/linux x86_64 platform. A release shipping only pure
wheels or only an sdist constrains the Python version only through its requires-python.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from imagefactory.recipe.index import IndexFile
from imagefactory.recipe.pyversions import MINORS

GLIBC_MINOR = 28  # glibc 2.28, what the resolver targets (x86_64-manylinux_2_28)
PLATFORMS = (*(f"manylinux_2_{m}_x86_64" for m in range(GLIBC_MINOR, 4, -1)),
             "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64")


@dataclass(frozen=True)
class Release:
    """The files of one version: their tags (wheels only), whether an sdist exists, requires-python."""

    tags: frozenset[Tag]
    sdist: bool
    requires_python: str | None

    @property
    def compiled(self) -> bool:
        return any(t.platform != "any" for t in self.tags)

    def minors(self, among: tuple[str, ...] = MINORS) -> tuple[str, ...]:
        """Minors (of `among`) with a usable wheel (compiled releases only)."""
        return tuple(m for m in among if any(fits(t, m) for t in self.tags))


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


def parse_version(filename: str) -> Version | None:
    """The version a wheel or sdist file name carries (None: not such a name)."""
    parsed = _parse(filename)
    return parsed[0] if parsed else None


def _parse(filename: str) -> tuple[Version, frozenset[Tag]] | None:
    try:
        if filename.endswith(".whl"):
            _, version, _, tags = parse_wheel_filename(filename)
            return version, tags
        _, version = parse_sdist_filename(filename)
        return version, frozenset()
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


@cache
def supported(minor: str) -> frozenset[Tag]:
    """Every platform-specific wheel tag CPython `minor` installs on linux x86_64 with glibc up to 2.28,
    as `packaging.tags` (pip's own rules) lists them: its ABI, abi3 of older minors, and no-ABI tags."""
    version = tuple(int(part) for part in minor.split("."))
    interpreter = f"cp{version[0]}{version[1]}"
    abi = interpreter + ("m" if version < (3, 8) else "")
    tags = (*cpython_tags(version, abis=[abi], platforms=PLATFORMS),
            *compatible_tags(version, interpreter=interpreter, platforms=PLATFORMS))
    return frozenset(t for t in tags if t.platform != "any")


def fits(tag: Tag, minor: str) -> bool:
    """Can CPython `minor` on linux x86_64 install a platform wheel with this tag?"""
    return tag in supported(minor)

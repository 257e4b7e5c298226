"""The standard library's top-level modules for a given CPython minor, not only the running one's.

`sys.stdlib_module_names` (3.10+) names the *running* Python's modules. A recipe's kernel may be 3.8 or
3.13, so the difference between minors is kept here as two small tables, and `is_stdlib(name, minor)`
answers for the recipe's version: a module removed in 3.M (PEP 594's "dead batteries" in 3.13,
distutils/imp/asyncore/asynchat/smtpd in 3.12 …) is not standard library from 3.M on, and a module added in
3.M (tomllib in 3.11, zoneinfo and graphlib in 3.9 …) is not before. Only top-level, public names matter
here (imports are classified by their first component). Pure; no I/O.
"""

from __future__ import annotations

import sys

# top-level module -> the minor it was removed in (imports of it then need a PyPI backport, if any)
REMOVED: dict[str, tuple[int, int]] = {
    "macpath": (3, 8),
    "dummy_threading": (3, 9), "_dummy_thread": (3, 9),
    "formatter": (3, 10), "parser": (3, 10), "symbol": (3, 10),
    "binhex": (3, 11),
    "distutils": (3, 12), "imp": (3, 12), "asynchat": (3, 12), "asyncore": (3, 12), "smtpd": (3, 12),
    # PEP 594, removed in 3.13 (and lib2to3 with 2to3)
    **{name: (3, 13) for name in ("aifc", "audioop", "cgi", "cgitb", "chunk", "crypt", "imghdr", "mailcap",
                                  "msilib", "nis", "nntplib", "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau",
                                  "telnetlib", "uu", "xdrlib", "lib2to3")},
}

# top-level module -> the minor it first shipped in
ADDED: dict[str, tuple[int, int]] = {
    "secrets": (3, 6),
    "contextvars": (3, 7), "dataclasses": (3, 7),
    "graphlib": (3, 9), "zoneinfo": (3, 9),
    "tomllib": (3, 11),
    "annotationlib": (3, 14), "compression": (3, 14),
}

# what the running Python lists, plus every name either table knows (so a 3.13 host still knows distutils)
KNOWN: frozenset[str] = frozenset(sys.stdlib_module_names) | frozenset(REMOVED) | frozenset(ADDED)


def parse_minor(version: str) -> tuple[int, int]:
    """'3.8' -> (3, 8)."""
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def is_stdlib(name: str, version: str) -> bool:
    """Whether top-level module `name` ships with CPython `version` ("3.X")."""
    if name not in KNOWN:
        return False
    minor = parse_minor(version)
    if name in REMOVED and minor >= REMOVED[name]:
        return False
    return not (name in ADDED and minor < ADDED[name])

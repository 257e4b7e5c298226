"""Python minor versions and PEP 440 constraints over them: which minors a stated constraint admits.

A constraint is one or more specifier sets joined by '|' (a conda 'or'). A minor X.Y is admitted when
some X.Y.Z release satisfies it, so '>=3.7.1' admits 3.7 and '<3.11' admits 3.10 but not 3.11.
"""

from __future__ import annotations

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

# Every CPython 3 minor a constraint or a wheel tag is read against, oldest first. Which of them can be
# built is data, not this list: see `imagefactory.recipe.pythons`.
MINORS = tuple(f"3.{m}" for m in range(0, 20))
PATCHES = (*range(0, 31), 99)


def specifier_sets(constraint: str) -> tuple[SpecifierSet, ...] | None:
    """Parse 'a|b'; None if any part is not a valid specifier set."""
    try:
        return tuple(SpecifierSet(part.strip()) for part in constraint.split("|"))
    except InvalidSpecifier:
        return None


def admits(constraint: str, minor: str) -> bool:
    sets = specifier_sets(constraint)
    if sets is None:
        return True
    versions = [Version(f"{minor}.{p}") for p in PATCHES]
    return any(s.contains(v, prereleases=True) for s in sets for v in versions)


def admitted(constraint: str, minors: tuple[str, ...] = MINORS) -> tuple[str, ...]:
    """The minors (oldest first) that `constraint` admits."""
    return tuple(m for m in minors if admits(constraint, m))


def valid(constraint: str) -> bool:
    return specifier_sets(constraint) is not None

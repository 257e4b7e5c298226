"""Choose the kernel's Python minor version, and say why.

Order: an override (the caller's --python) wins, checked only against what can be built; else what the
repository states (runtime.txt, environment.yml, Pipfile, requires-python, python_requires), taking the
newest buildable minor every statement admits; when a statement admits several minors (or nothing is
stated), exact pins are the fast first step (the newest minor for which every compiled pin has a wheel, see
`infer`), then, given an `attempt`, a search downward with the resolver for the newest minor at which the
pip part resolves with wheels for compiled packages (`pysearch`); else the target's default
(`PythonDefault`: the factory default on AWS, the sandbox's own Python there, which does not search: it
builds only that one). Statements that disagree are tried in rank order, and the first at which the
environment resolves is taken; both sources and the choice are reported. Which minors can be built is data
(`pythons.Pythons`), never a list here: a statement outside it is one line saying which to pass instead.

The result carries `source` (override|stated|inferred|default) and a one-line reason; a default's reason
names whose default it is ("the sandbox's own Python 3.11: nothing in the repository states a version"),
so that `redefault` can give a recipe derived for one target the default of another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imagefactory.errors import RecipeError
from imagefactory.recipe.findings import Pin, PythonClaim
from imagefactory.recipe.index import PackageIndex
from imagefactory.recipe.infer import Inference, infer
from imagefactory.recipe.model import DEFAULT_PYTHON, PYTHON_RE, PythonSpec
from imagefactory.recipe.pysearch import BUDGET_S, Attempt, Search, search
from imagefactory.recipe.pythons import Pythons
from imagefactory.recipe.pyversions import admitted, valid


@dataclass(frozen=True)
class PythonDefault:
    """The version a target builds when nothing states or infers one, and whose it is (for the reason).
    `searches`: whether the target can build other Pythons, so that searching for one is worth it."""

    version: str
    who: str
    searches: bool = True

    def spec(self, why: str) -> PythonSpec:
        return PythonSpec(self.version, "default", f"{self.who} {self.version}: {why}")


FACTORY_DEFAULT = PythonDefault(DEFAULT_PYTHON, "the factory default Python")
_DEFAULT_REASON = re.compile(r"the .+ (\d+\.\d+): ")
_OLD_DEFAULT_REASON = "using the factory default"


def redefault(spec: PythonSpec, default: PythonDefault) -> PythonSpec | None:
    """The target's default in place of another target's, when `spec` is a derived default left as derived
    (its version still the one its reason names); None when `spec` stays as it is."""
    if spec.source != "default" or spec.version == default.version:
        return None
    named = _DEFAULT_REASON.match(spec.reason)
    derived = named.group(1) if named else (DEFAULT_PYTHON if spec.reason.endswith(_OLD_DEFAULT_REASON) else None)
    if derived != spec.version:
        return None  # the user changed the version by hand: theirs
    why = spec.reason[named.end():] if named else "nothing in the repository states a version"
    return default.spec(why)


def choose(claims: tuple[PythonClaim, ...], pins: tuple[Pin, ...], *, override: str | None,
           index: PackageIndex | None, pythons: Pythons, default: PythonDefault = FACTORY_DEFAULT,
           attempt: Attempt | None = None) -> tuple[PythonSpec, tuple[str, ...]]:
    """The Python spec and any notes. With `index` None the package index is not asked; with `attempt`
    None the resolver is not run (no search)."""
    if override is not None:
        return override_spec(override, pythons), ()
    notes: list[str] = []
    claims = tuple(c for c in sorted(claims, key=lambda c: c.rank) if c.spec and _valid(c, notes))
    claims = _buildable(claims, pythons, notes)
    attempt = attempt if default.searches else None
    allowed = pythons.minors
    for claim in claims:
        allowed = tuple(m for m in admitted(claim.spec, pythons.minors) if m in allowed)
    if claims and not allowed:
        return _disagreeing(claims, pythons, attempt, notes)
    stated = " and ".join(f"{_show(c.spec)} in {c.origin}" for c in claims)
    if stated and len(allowed) == 1:
        return PythonSpec(allowed[0], "stated", stated), tuple(notes)
    inference = infer(pins, index) if index is not None and pins else None
    fallback = allowed[-1] if stated else default.version
    decided = inference is not None and inference.decided(allowed, fallback)
    if inference is not None:
        notes.extend(inference.notes)
    if attempt is not None:
        ceiling = inference.best(allowed)[0] if inference is not None and decided else allowed[-1]
        candidates = tuple(reversed(allowed[:allowed.index(ceiling) + 1]))
        found = _searched(search(candidates, attempt), stated, allowed, inference if decided else None, notes)
        if found is not None:
            return found, tuple(notes)
    if inference is not None and decided:
        version, why = inference.best(allowed)
        reason = why if not stated else f"{stated} allows {_span(allowed)}; {why}"
        return PythonSpec(version, "inferred", reason), tuple(notes)
    if stated:
        return PythonSpec(allowed[-1], "stated", f"{stated} allows {_span(allowed)}; newest taken"), tuple(notes)
    return default.spec(_default_reason(pins, inference)), tuple(notes)


def override_spec(version: str, pythons: Pythons) -> PythonSpec:
    """--python, checked only against what can be built (a statement in the repository does not matter)."""
    if not PYTHON_RE.fullmatch(version):
        raise RecipeError(f"--python {version!r} is not a Python 3 minor version",
                          f"pass one the factory can build, {pythons.span()}, e.g. --python {pythons.minors[-1]}")
    if version not in pythons.minors:
        raise RecipeError(f"--python {version} is outside what the factory can build ({pythons.span()}: "
                          f"{pythons.source})", f"pass --python {pythons.nearest(version)}")
    return PythonSpec(version, "override", "given on the command line")


def _valid(claim: PythonClaim, notes: list[str]) -> bool:
    if not valid(claim.spec):
        notes.append(f"ignored Python constraint {claim.spec!r} in {claim.origin}: "
                     "not a valid version specifier")
        return False
    return True


def _buildable(claims: tuple[PythonClaim, ...], pythons: Pythons, notes: list[str]) -> tuple[PythonClaim, ...]:
    """The claims that admit a buildable minor. One that admits none is noted and left out while another
    remains; when none remains, one line says which --python to pass instead."""
    usable = tuple(c for c in claims if admitted(c.spec, pythons.minors))
    outside = [c for c in claims if c not in usable]
    if outside and not usable:
        first = outside[0]
        near = admitted(first.spec)
        nearest = pythons.nearest(near[-1]) if near else pythons.minors[0]
        where = first.origin.split()[0]
        raise RecipeError(f"{first.origin}: {_show(first.spec)} is outside what the factory can build "
                          f"({pythons.span()}: {pythons.source})",
                          f"pass --python {nearest} (invoke recipe --repo ... --python {nearest}, or invoke bake ... "
                          f"--python {nearest}), or state a Python {pythons.span()} in {where}")
    for claim in outside:
        notes.append(f"{_show(claim.spec)} in {claim.origin} is outside what the factory can build "
                     f"({pythons.span()}): not used")
    return usable


def _disagreeing(claims: tuple[PythonClaim, ...], pythons: Pythons, attempt: Attempt | None,
                 notes: list[str]) -> tuple[PythonSpec, tuple[str, ...]]:
    """Statements that admit no common minor: the first (in rank order) at which the environment resolves."""
    listed = "; ".join(f"{_show(c.spec)} in {c.origin}" for c in claims)
    options = [(c, admitted(c.spec, pythons.minors)[-1]) for c in claims]
    failed: list[str] = []
    for claim, minor in options if attempt is not None else ():
        ok, why = attempt(minor, BUDGET_S)
        if ok:
            not_at = f", not at {'; '.join(failed)}" if failed else ""
            others = [f"{_show(c.spec)} in {c.origin}" for c, _ in options if c is not claim]
            notes.append(f"the Python constraints disagree ({listed}); the environment resolves at {minor} "
                         f"({claim.origin}){not_at}: using {minor}")
            return PythonSpec(minor, "stated", f"{_show(claim.spec)} in {claim.origin}, chosen over "
                                               f"{' and '.join(others)}: the environment resolves there"), tuple(notes)
        failed.append(f"{minor} ({claim.origin}: {why})")
    claim, minor = options[0]
    if attempt is None:
        notes.append(f"the Python constraints disagree ({listed}); using {claim.origin} (the environment was "
                     "not resolved to decide)")
    else:
        notes.append(f"the Python constraints disagree ({listed}) and the environment resolves at none of them "
                     f"({'; '.join(failed)}); using {claim.origin}")
    return PythonSpec(minor, "stated", f"{_show(claim.spec)} in {claim.origin}"), tuple(notes)


def _searched(found: Search, stated: str, allowed: tuple[str, ...], inference: Inference | None,
              notes: list[str]) -> PythonSpec | None:
    """The spec a search found (None: it found none, and the notes say what was tried and why it failed)."""
    for tried in found.tried:
        if not tried.ok:
            notes.append(f"Python {tried.minor}: the pip part does not resolve: {tried.why}")
    if found.found is None:
        if found.tried:
            stop = f"; {found.stopped}" if found.stopped else ""
            notes.append(f"the pip part resolves at none of the Pythons tried ({found.tried_span()}){stop}")
        return None
    minor = found.found
    prefix = f"{stated} allows {_span(allowed)}; " if stated else "nothing in the repository states a version; "
    failed = [t.minor for t in found.tried if not t.ok]
    tried = f" (tried {found.tried_span()}: {', '.join(failed)} do not resolve, see the notes)" if failed else ""
    if inference is not None:
        why = inference.best(allowed)[1]
        return PythonSpec(minor, "inferred", f"{prefix}{why}; the pip part resolves at {minor}{tried}")
    reason = f"{prefix}{minor} is the newest Python at which the pip part resolves with wheels for compiled " \
             f"packages{tried}"
    source = "stated" if stated and minor == allowed[-1] else "inferred"
    return PythonSpec(minor, source, reason)


def _show(spec: str) -> str:
    return "python " + spec.replace("==", "").replace(".*", "") if spec.startswith("==") else f"python {spec}"


def _span(minors: tuple[str, ...]) -> str:
    return minors[0] if len(minors) == 1 else f"{minors[0]}–{minors[-1]}"


def _default_reason(pins: tuple[Pin, ...], inference: Inference | None) -> str:
    if not pins:
        return "nothing in the repository states a version, and no exact pins to infer one from"
    if inference is None:
        return "nothing in the repository states a version (the package index was not asked about the pins)"
    return "nothing in the repository states a version, and the pins did not decide one"

"""Choose the kernel's Python minor version, and say why.

Order: an override (the caller's --python) wins; else what the repository states (runtime.txt,
environment.yml, Pipfile, requires-python, python_requires), taking the newest minor every statement
admits; when a statement admits several minors and exact pins exist, the newest of those for which
every compiled pin has a wheel (see `infer`); with no statement, the same inference over 3.6–3.13; else
the target's default (`PythonDefault`: the factory default on AWS, the sandbox's own Python there).
Pins decide only when a compiled pin rules a minor out, or some pin's
requires-python rules out the version that would be chosen without them. The result carries `source`
(override|stated|inferred|default) and a one-line reason; a default's reason names whose default it is
("the sandbox's own Python 3.11: nothing in the repository states a version"), so that `redefault` can
give a recipe derived for one target the default of another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imagefactory.errors import RecipeError
from imagefactory.recipe.findings import Pin, PythonClaim
from imagefactory.recipe.index import PackageIndex
from imagefactory.recipe.infer import Inference, infer
from imagefactory.recipe.model import DEFAULT_PYTHON, PYTHON_RE, PythonSpec
from imagefactory.recipe.pyversions import MINORS, admitted, valid


@dataclass(frozen=True)
class PythonDefault:
    """The version a target builds when nothing states or infers one, and whose it is (for the reason)."""

    version: str
    who: str

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
           index: PackageIndex | None,
           default: PythonDefault = FACTORY_DEFAULT) -> tuple[PythonSpec, tuple[str, ...]]:
    """The Python spec and any notes. With `index` None the package index is not asked."""
    if override is not None:
        if not PYTHON_RE.fullmatch(override):
            raise RecipeError(f"--python {override!r} is not a Python minor version", "write e.g. 3.10")
        return PythonSpec(override, "override", "given on the command line"), ()
    notes: list[str] = []
    claims = tuple(c for c in sorted(claims, key=lambda c: c.rank) if c.spec and _usable(c, notes))
    allowed, stated = _stated(claims, notes)
    inference = infer(pins, index) if index is not None and pins and len(allowed) > 1 else None
    fallback = allowed[-1] if stated else default.version
    if inference is not None and inference.decided(allowed, fallback):
        version, why = inference.best(allowed)
        reason = why if not stated else f"{stated} allows {_span(allowed)}; {why}"
        return PythonSpec(version, "inferred", reason), (*notes, *inference.notes)
    if inference is not None:
        notes.extend(inference.notes)
    if stated:
        reason = stated if len(allowed) == 1 else f"{stated} allows {_span(allowed)}; newest taken"
        return PythonSpec(allowed[-1], "stated", reason), tuple(notes)
    return default.spec(_default_reason(pins, inference)), tuple(notes)


def _usable(claim: PythonClaim, notes: list[str]) -> bool:
    if not valid(claim.spec):
        notes.append(f"ignored Python constraint {claim.spec!r} in {claim.origin}: "
                     "not a valid version specifier")
        return False
    if not admitted(claim.spec):
        raise RecipeError(f"{claim.origin}: Python {claim.spec} is outside what the factory builds "
                          f"({MINORS[0]}–{MINORS[-1]})", "state a Python 3.6–3.13 version, or pass --python")
    return True


def _stated(claims: tuple[PythonClaim, ...], notes: list[str]) -> tuple[tuple[str, ...], str]:
    """(minors admitted by every claim, a description) — or the first claim's alone if they disagree."""
    if not claims:
        return MINORS, ""
    allowed = MINORS
    for claim in claims:
        allowed = tuple(m for m in admitted(claim.spec) if m in allowed)
    if not allowed:
        first = claims[0]
        listed = "; ".join(f"{c.spec} in {c.origin}" for c in claims)
        notes.append(f"the Python constraints disagree ({listed}); using {first.origin}")
        return admitted(first.spec), f"{_show(first.spec)} in {first.origin}"
    return allowed, " and ".join(f"{_show(c.spec)} in {c.origin}" for c in claims)


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

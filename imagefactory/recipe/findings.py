"""What a detector reports: findings (used or ignored, each with a reason) and its share of the recipe.

A `Detection` is plain data carrying an `Environment` (the recipe's own type, so its fields are declared
once); `derive` concatenates the detections of every detector in registry order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imagefactory.recipe.model import Environment


@dataclass(frozen=True)
class Finding:
    """One file and what became of it: `kind` is its family, `reason` says why used or why ignored."""

    path: str
    kind: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "reason": self.reason}


@dataclass(frozen=True)
class PythonClaim:
    """A Python version constraint stated in a file, as a PEP 440 specifier set (e.g. '>=3.9,<3.11')."""

    spec: str
    origin: str
    # lower wins when claims disagree: runtime.txt 0, conda 1, Pipfile 2, pyproject/setup.cfg 3, setup.py 4
    rank: int = 0


@dataclass(frozen=True)
class Pin:
    """An exact `name==version` pip requirement; these drive Python inference."""

    name: str
    version: str
    origin: str


@dataclass(frozen=True)
class Detection:
    """A detector's answer: findings plus its share of the kernel environment (empty when nothing found).

    `environment.python` is not set by detectors: they state `python` claims, and `derive` chooses the
    version from the claims and pins of every detector."""

    used: tuple[Finding, ...] = ()
    ignored: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()
    environment: Environment = field(default_factory=Environment)
    python: tuple[PythonClaim, ...] = ()
    pins: tuple[Pin, ...] = ()
    index_urls: tuple[str, ...] = ()


def merge(parts: tuple[Detection, ...]) -> Detection:
    """All detections in order, as one: lists concatenated, the first pipfile and start script kept."""

    def cat(attr: str) -> tuple[Any, ...]:
        return tuple(x for p in parts for x in getattr(p, attr))

    envs = tuple(p.environment for p in parts)

    def env_cat(attr: str) -> tuple[Any, ...]:
        return tuple(x for e in envs for x in getattr(e, attr))

    environment = Environment(
        apt=env_cat("apt"), conda=env_cat("conda"), pip=env_cat("pip"),
        pipfile=next((e.pipfile for e in envs if e.pipfile), None), install_repo=any(e.install_repo for e in envs),
        post_build=env_cat("post_build"), start=next((e.start for e in envs if e.start), None),
    )
    return Detection(used=cat("used"), ignored=cat("ignored"), notes=cat("notes"), environment=environment,
                     python=cat("python"), pins=cat("pins"), index_urls=cat("index_urls"))

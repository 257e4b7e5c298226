"""What a detector reports: findings (used or ignored, each with a reason) and its share of the recipe.

A `Detection` is plain data; `derive` concatenates the detections of every detector in registry order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imagefactory.recipe.model import PostBuild


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
    """A detector's answer: findings plus the recipe fields it contributes (empty when nothing found)."""

    used: tuple[Finding, ...] = ()
    ignored: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()
    apt: tuple[str, ...] = ()
    conda: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    pipfile: str | None = None
    install_repo: bool = False
    post_build: tuple[PostBuild, ...] = ()
    start: str | None = None
    python: tuple[PythonClaim, ...] = ()
    pins: tuple[Pin, ...] = ()
    index_urls: tuple[str, ...] = field(default=())


def merge(parts: tuple[Detection, ...]) -> Detection:
    """All detections in order, as one."""

    def cat(attr: str) -> tuple[Any, ...]:
        return tuple(x for p in parts for x in getattr(p, attr))

    return Detection(
        used=cat("used"), ignored=cat("ignored"), notes=cat("notes"), apt=cat("apt"), conda=cat("conda"),
        pip=cat("pip"), pipfile=next((p.pipfile for p in parts if p.pipfile), None),
        install_repo=any(p.install_repo for p in parts), post_build=cat("post_build"),
        start=next((p.start for p in parts if p.start), None), python=cat("python"), pins=cat("pins"),
        index_urls=cat("index_urls"),
    )

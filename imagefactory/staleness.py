"""Whether an image is stale, and every reason why, decided from its builds and what was observed now.

Pure: `decide` takes the image's latest and last builds, the observations (`Facts`, gathered by
`imagefactory.observations`), the recipe's `rebuild` settings and the time, and returns a `Verdict`. An
observation that could not be made is `Seen(error=...)`: it is reported as unknown, never as fresh.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from imagefactory import timestamps
from imagefactory.catalog import Build
from imagefactory.recipe.model import Rebuild

T = TypeVar("T")

# what each kind of reason means, in the order they are listed
KINDS = {
    "no-build": "the image has no available build",
    "last-build": "the last build failed or was interrupted",
    "commit": "commit moved",
    "recipe": "recipe changed",
    "base-image": "newer base image",
    "contract": "image contract changed",
    "packages": "packages would resolve to other versions",
    "age": "build too old",
}
PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


@dataclass(frozen=True)
class Seen(Generic[T]):
    """One observation: its value now, or why it could not be made (`error`)."""

    value: T | None = None
    error: str | None = None


@dataclass(frozen=True)
class Facts:
    """What was observed now for one image. `packages` is None when the check does not apply (the build
    installed nothing, or the recipe has no pip requirements)."""

    commit: Seen[str]
    recipe_digest: Seen[str]
    base_amis: Seen[dict[str, str]]          # region -> the newest base AMI matching the recipe's filter
    contract_digest: Seen[str]
    packages: Seen[tuple[str, ...]] | None = None  # the pins ("name==version") the requirements resolve to now


@dataclass(frozen=True)
class Reason:
    kind: str
    old: str | None
    new: str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "old": self.old, "new": self.new, "detail": self.detail}


@dataclass(frozen=True)
class Unknown:
    kind: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class Verdict:
    name: str
    latest: str | None
    reasons: tuple[Reason, ...] = ()
    unknown: tuple[Unknown, ...] = field(default_factory=tuple)

    @property
    def status(self) -> str:
        return "stale" if self.reasons else "unknown" if self.unknown else "fresh"

    @property
    def incremental(self) -> bool:
        """Only the commit moved (everything else observed unchanged): an incremental rebuild is allowed."""
        return bool(self.reasons) and all(r.kind == "commit" for r in self.reasons) and not self.unknown

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "latest": self.latest, "status": self.status,
                "reasons": [r.to_dict() for r in self.reasons], "unknown": [u.to_dict() for u in self.unknown],
                "incremental": self.incremental}


def decide(name: str, latest: Build | None, last: Build | None, facts: Facts | None, *, rebuild: Rebuild,
           now: datetime) -> Verdict:
    """Every reason `latest` (the image's available build) is stale; `last` is its newest build of any status."""
    reasons: list[Reason] = []
    unknown: list[Unknown] = []
    if last is not None and last.status != "available" and (latest is None or last.id != latest.id):
        reasons.append(Reason("last-build", latest.id if latest else None, last.id,
                              f"build {last.id} {last.status}: {(last.error or 'no reason recorded')[:200]}"))
    if latest is None:
        reasons.append(Reason("no-build", None, None, KINDS["no-build"]))
        return Verdict(name, None, tuple(reasons))
    if facts is not None:
        _compare(latest, facts, reasons, unknown)
    age = _age_days(latest.created, now)
    if age is None:
        unknown.append(Unknown("age", f"build {latest.id} has an unreadable creation time {latest.created!r}"))
    elif age > rebuild.max_age_days:
        reasons.append(Reason("age", latest.created, timestamps.stamp(now),
                              f"built {age} days ago; rebuild.max_age_days is {rebuild.max_age_days}"))
    return Verdict(name, latest.id, tuple(reasons), tuple(unknown))


def _compare(build: Build, facts: Facts, reasons: list[Reason], unknown: list[Unknown]) -> None:
    def same(kind: str, seen: Seen[str], old: str | None, what: str) -> None:
        if seen.error is not None:
            unknown.append(Unknown(kind, seen.error))
        elif old is None:
            unknown.append(Unknown(kind, f"build {build.id} recorded no {what}"))
        elif seen.value != old:
            detail = f"{KINDS[kind]}: {what} {_short(old)} -> {_short(seen.value)}"
            reasons.append(Reason(kind, old, seen.value, detail))

    same("commit", facts.commit, build.commit, f"{build.ref or 'the ref'} at")
    same("recipe", facts.recipe_digest, build.recipe_digest or None, "digest")
    _base(build, facts.base_amis, reasons, unknown)
    same("contract", facts.contract_digest, build.contract_digest, "digest")
    if facts.packages is not None:
        _packages(build, facts.packages, reasons, unknown)


def _base(build: Build, seen: Seen[dict[str, str]], reasons: list[Reason], unknown: list[Unknown]) -> None:
    if seen.error is not None or seen.value is None:
        unknown.append(Unknown("base-image", seen.error or "no base image was looked up"))
        return
    for region in sorted(build.amis):
        old, new = build.base_ami.get(region), seen.value.get(region)
        if new is None:
            unknown.append(Unknown("base-image", f"no base image matches the recipe's filter in {region}"))
        elif old is None:
            unknown.append(Unknown("base-image", f"build {build.id} recorded no base AMI in {region}"))
        elif new != old:
            reasons.append(Reason("base-image", old, new, f"{KINDS['base-image']} in {region}: {old} -> {new}"))


def _packages(build: Build, seen: Seen[tuple[str, ...]], reasons: list[Reason], unknown: list[Unknown]) -> None:
    if seen.error is not None or seen.value is None:
        unknown.append(Unknown("packages", seen.error or "the requirements were not resolved"))
        return
    listed = (build.image_manifest or {}).get("packages")
    if not isinstance(listed, list):
        unknown.append(Unknown("packages", f"build {build.id} recorded no package versions (no image manifest)"))
        return
    had = {_norm(str(p.get("name", ""))): str(p.get("version", "")) for p in listed if isinstance(p, dict)}
    for pin in sorted(seen.value):
        match = PIN.fullmatch(pin.strip())
        if not match:
            continue
        name, version = _norm(match.group(1)), match.group(2)
        old = had.get(name)
        if old != version:
            reasons.append(Reason("packages", f"{name}=={old}" if old else None, f"{name}=={version}",
                                  f"{name} would resolve to {version} (the build has {old or 'none'})"))


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _short(value: str | None) -> str:
    if value is None:
        return "none"
    if re.fullmatch(r"[0-9a-f]{40}", value):
        return value[:12]
    if value.startswith("sha256:"):
        return value[:19]
    return value


def _age_days(created: str, now: datetime) -> int | None:
    try:
        when = datetime.strptime(created, timestamps.STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None
    return (now - when).days

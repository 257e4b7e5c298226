"""Which builds of an image to keep, deprecate or retire: the retention plan, pure (data in, data out).

`plan_image(entry, rules, now, protections)` decides per build, and per region of each build, one of:

- **keep**, with the rule that kept it: the image's `latest`; one of the `keep` newest available builds; shared
  with a class whose term has not ended (or whose roster is not here, so its term is unknown); instances
  (running or stopped) launched from one of its AMIs, or a region where that could not be checked; the parent
  of an incremental build that is itself not retired; or younger than `deprecate_after_days`;
- **deprecate** (past `deprecate_after_days`): each region's AMI not yet deprecated gets a `deprecate` step;
- **retire** (past `delete_after_days`): each region's AMI is deregistered and its snapshots deleted; a region
  whose snapshots could not all be deleted last time (`snapshots_left`) gets a `delete-snapshots` step.

What the cloud says (instances per AMI, class terms, regions that could not be read) arrives as
`Protections`, gathered by the effectful shell (`imagefactory.prune`); `record_*` are what it writes to the
catalog once a region's change is done. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from imagefactory import timestamps
from imagefactory.catalog import Build, Catalog, ImageEntry
from imagefactory.recipe.model import Lifecycle

KEEP, DEPRECATE, RETIRE = "keep", "deprecate", "retire"
CHANGES = ("deprecate", "deregister", "delete-snapshots")   # the region steps that change something


@dataclass(frozen=True)
class Rules:
    keep: int = Lifecycle.keep
    deprecate_after_days: int = Lifecycle.deprecate_after_days
    delete_after_days: int = Lifecycle.delete_after_days

    @classmethod
    def of(cls, lifecycle: Lifecycle) -> Rules:
        return cls(lifecycle.keep, lifecycle.deprecate_after_days, lifecycle.delete_after_days)

    def overridden(self, *, keep: int | None = None, older_than: int | None = None) -> Rules:
        """This run's rules: `keep` retires now all but the `keep` newest (no age needed, unless `older_than`
        is given too); `older_than` retires what is older than that many days (and deprecates no later)."""
        if older_than is not None:
            return Rules(self.keep if keep is None else keep, min(self.deprecate_after_days, older_than), older_than)
        return Rules(keep, 0, 0) if keep is not None else self


@dataclass(frozen=True)
class Protections:
    """What the cloud and the class rosters say, read by the shell before planning."""

    instances: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # AMI id -> instances launched from it
    class_terms: Mapping[str, date | None] = field(default_factory=dict)    # class -> its term's end (None: unknown)
    unchecked: Mapping[str, str] = field(default_factory=dict)              # region -> why its instances are unknown


@dataclass(frozen=True)
class RegionStep:
    region: str
    ami: str | None
    action: str                    # keep | deprecated (already) | deprecate | deregister | delete-snapshots
    snapshots: tuple[str, ...] = ()

    @property
    def changes(self) -> bool:
        return self.action in CHANGES


@dataclass(frozen=True)
class BuildPlan:
    build: str
    created: str
    decision: str                  # keep | deprecate | retire
    rule: str                      # the rule that kept it, or why it goes
    regions: tuple[RegionStep, ...] = ()

    @property
    def changes(self) -> bool:
        return any(step.changes for step in self.regions)


@dataclass(frozen=True)
class ImagePlan:
    image: str
    rules: Rules
    builds: tuple[BuildPlan, ...] = ()

    @property
    def changes(self) -> bool:
        return any(b.changes for b in self.builds)

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "rules": asdict(self.rules),
                "builds": [{**asdict(b), "regions": [asdict(s) for s in b.regions]} for b in self.builds]}

    def lines(self) -> list[str]:
        r = self.rules
        rest = ("retire the others now" if r.delete_after_days == 0 else
                f"deprecate after {r.deprecate_after_days} days, retire after {r.delete_after_days} days")
        out = [f"{self.image}: keep the {r.keep} newest, {rest}"]
        for b in self.builds:
            out.append(f"  {b.build} ({b.created}): {b.decision.upper()}: {b.rule}")
            out += [f"    {s.region} {s.ami or '-'}: {_step_text(s)}" for s in b.regions]
        if not self.builds:
            out.append("  no builds")
        return out


def _step_text(step: RegionStep) -> str:
    if step.action == "delete-snapshots":
        return f"delete snapshots left from last time: {', '.join(step.snapshots)}"
    if step.action == "deregister":
        return "deregister the AMI and delete its snapshots (those no other AMI uses)"
    return {"keep": "kept", "deprecated": "already deprecated", "deprecate": "deprecate the AMI"}[step.action]


def created_at(build: Build) -> datetime:
    return timestamps.parse(build.created)


def _protected(entry: ImageEntry, build: Build, newest: list[str], rules: Rules, now: datetime,
               protections: Protections) -> str | None:
    """The first rule that keeps `build` regardless of its age, or None."""
    if build.id == entry.latest:
        return "the image's latest build"
    if build.id in newest:
        return f"one of the {rules.keep} newest builds (lifecycle.keep)"
    for name in sorted({s["class"] for s in build.shares}):
        end = protections.class_terms.get(name)
        if name not in protections.class_terms or end is None:
            return f"shared with class {name}, whose roster is not here (its term is unknown)"
        if end >= now.date():
            return f"shared with class {name}, whose term ends {end.isoformat()}"
    launched = sorted({i for ami in build.amis.values() for i in protections.instances.get(ami, ())})
    if launched:
        return f"instances launched from it: {', '.join(launched)}"
    for region in sorted(build.amis):
        if region in protections.unchecked:
            return f"its instances in {region} could not be checked ({protections.unchecked[region]})"
    return None


def _by_age(build: Build, rules: Rules, now: datetime) -> tuple[str, str]:
    age = now - created_at(build)
    days = age.days
    if age >= timedelta(days=rules.delete_after_days):
        return RETIRE, f"{days} days old, past delete_after_days ({rules.delete_after_days})"
    if age >= timedelta(days=rules.deprecate_after_days):
        return DEPRECATE, f"{days} days old, past deprecate_after_days ({rules.deprecate_after_days})"
    return KEEP, f"{days} days old, younger than deprecate_after_days ({rules.deprecate_after_days})"


def _steps(build: Build, decision: str) -> tuple[RegionStep, ...]:
    steps = []
    for region, ami in sorted(build.amis.items()):
        if decision == RETIRE:
            action = "deregister"
        elif decision == DEPRECATE:
            action = "deprecated" if region in build.deprecated_at else "deprecate"
        else:
            action = "keep"
        steps.append(RegionStep(region, ami, action))
    steps += [RegionStep(region, build.retired_amis.get(region), "delete-snapshots", tuple(snaps))
              for region, snaps in sorted(build.snapshots_left.items()) if snaps]
    return tuple(steps)


def plan_image(entry: ImageEntry, rules: Rules, now: datetime, protections: Protections) -> ImagePlan:
    """Every build's decision, newest first. Builds that failed, or were retired with nothing left, are left
    out; a retired build with snapshots left to delete is retired again (its deletions retried)."""
    available = sorted((b for b in entry.builds if b.status == "available"), key=created_at, reverse=True)
    newest = [b.id for b in available[: rules.keep]]
    decided: dict[str, tuple[str, str]] = {}
    for build in available:
        rule = _protected(entry, build, newest, rules, now, protections)
        decided[build.id] = (KEEP, rule) if rule else _by_age(build, rules, now)
    changed = True
    while changed:  # a parent stays while any incremental build baked from it stays
        changed = False
        for child in available:
            parent = child.parent_build
            if parent in decided and decided[child.id][0] != RETIRE and decided[parent][0] != KEEP:
                decided[parent] = (KEEP, f"the parent of incremental build {child.id}, which is kept")
                changed = True
    plans = [BuildPlan(b.id, b.created, *decided[b.id], _steps(b, decided[b.id][0])) for b in available]
    plans += [BuildPlan(b.id, b.created, RETIRE, "retired; deleting the snapshots left last time", _steps(b, RETIRE))
              for b in sorted(entry.builds, key=created_at, reverse=True)
              if b.status == "retired" and any(b.snapshots_left.values())]
    return ImagePlan(entry.name, rules, tuple(plans))


def retiring(plan: ImagePlan) -> list[tuple[str, RegionStep]]:
    """(build, step) for every AMI the plan deregisters: what pruning saves."""
    return [(b.build, s) for b in plan.builds for s in b.regions if s.action == "deregister"]


# ------------------------------------------------------------------------------------------- the record
def _with_build(catalog: Catalog, image: str, build_id: str, change: Callable[[Build], Build]) -> Catalog:
    entry = catalog.image(image)
    builds = tuple(change(b) if b.id == build_id else b for b in entry.builds)
    return Catalog(images={**catalog.images, image: replace(entry, builds=builds)})


def record_deprecated(catalog: Catalog, image: str, build_id: str, region: str, at: str) -> Catalog:
    """The catalog saying that build's AMI in `region` is deprecated (from `at`)."""
    return _with_build(catalog, image, build_id,
                       lambda b: replace(b, deprecated_at={**b.deprecated_at, region: at}))


def record_deregistered(catalog: Catalog, image: str, build_id: str, region: str, at: str,
                        left: tuple[str, ...]) -> Catalog:
    """The catalog without that build's AMI in `region` (kept as `retired_amis`), the snapshots still to delete,
    the class records of that AMI dropped, and the build `retired` once it has no AMI left."""
    def change(b: Build) -> Build:
        ami = b.amis.get(region) or b.retired_amis.get(region)
        amis = {r: a for r, a in b.amis.items() if r != region}
        snapshots = {r: s for r, s in b.snapshots_left.items() if r != region} | ({region: left} if left else {})
        return replace(b, amis=amis, status="retired" if not amis else b.status,
                       deregistered_at={**b.deregistered_at, region: at},
                       retired_amis={**b.retired_amis, **({region: ami} if ami else {})},
                       snapshots_left=snapshots, shares=tuple(s for s in b.shares if s.get("ami") != ami))

    return _with_build(catalog, image, build_id, change)


def record_snapshots_left(catalog: Catalog, image: str, build_id: str, region: str, left: tuple[str, ...]) -> Catalog:
    def change(b: Build) -> Build:
        snapshots = {r: s for r, s in b.snapshots_left.items() if r != region} | ({region: left} if left else {})
        return replace(b, snapshots_left=snapshots)

    return _with_build(catalog, image, build_id, change)

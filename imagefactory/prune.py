"""`invoke prune`: plan the retention of every image's builds (`imagefactory.retention`, pure) from what the
cloud and the class rosters say now, print it, and — with `--yes` — carry it out, region by region.

Per region: **deprecate** (EnableImageDeprecation from the next whole minute: AWS refuses a time in the
past; an AMI already deprecated by then, e.g. by Packer's `deprecate_at`, is only recorded); **deregister**
(DeregisterImage, then DeleteSnapshot of each of its snapshots: one still used by another AMI is kept,
`InvalidSnapshot.InUse`; one whose deletion fails is recorded in `snapshots_left` and retried next run).
Each region's change is written to the catalog as soon as it is done (`catalog.update`), so a run that stops
or a region that fails leaves nothing half-recorded: a failed region is reported and planned again next run,
and an AMI found already gone is recorded as deregistered (the catalog never points at a missing AMI).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from imagefactory import catalog as catalog_mod
from imagefactory import retention
from imagefactory.catalog import Catalog, ImageEntry
from imagefactory.classes import roster as rosters
from imagefactory.cloud import image_usage
from imagefactory.cloud.target import SANDBOX_NOTICE, Target, choose_target, open_target
from imagefactory.home import Home
from imagefactory.recipe.model import Lifecycle
from imagefactory.recipe.recipefile import load_recipe
from imagefactory.retention import ImagePlan, Protections, RegionStep, Rules
from imagefactory.tags import BUILD_ID_TAG
from imagefactory.timestamps import parse as parse_time
from imagefactory.timestamps import stamp

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    image: str
    build: str
    region: str
    action: str
    ok: bool
    detail: str

    def line(self) -> str:
        state = "done" if self.ok else "FAILED"
        return f"  {state}: {self.image} {self.build} {self.region} {self.action}: {self.detail}"


@dataclass(frozen=True)
class PruneReport:
    target: str
    applied: bool
    plans: tuple[ImagePlan, ...]
    outcomes: tuple[Outcome, ...] = ()

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "applied": self.applied, "images": [p.to_dict() for p in self.plans],
                "outcomes": [asdict(o) for o in self.outcomes]}

    def text(self) -> str:
        lines = [line for plan in self.plans for line in plan.lines()] or ["no images in the catalog"]
        steps = [s for p in self.plans for b in p.builds for s in b.regions if s.changes]
        if not steps:
            lines.append("nothing to change")
        elif not self.applied:
            counts = {a: sum(s.action == a for s in steps) for a in retention.CHANGES}
            lines.append(f"dry run, nothing changed: {counts['deregister']} AMIs to deregister, {counts['deprecate']} "
                         f"to deprecate, {counts['delete-snapshots']} regions with snapshots left "
                         "(run with --yes to do it)")
        else:
            lines += [o.line() for o in self.outcomes]
        return "\n".join(lines)


def rules_for(home: Home, name: str) -> Rules:
    """The image's recipe `lifecycle` (the defaults when it has no recipe here)."""
    path = home.recipe_path(name)
    return Rules.of(load_recipe(path).lifecycle if path.exists() else Lifecycle())


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error", {}).get("Code"):
        return f"{response['Error']['Code']}: {response['Error'].get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


def class_terms(home: Home, entries: list[ImageEntry]) -> dict[str, date | None]:
    """Each class a build is shared with -> its term's end, or None when its roster is not here."""
    names = {s["class"] for e in entries for b in e.builds for s in b.shares}
    return {n: rosters.load(home.root, n).term_end if rosters.roster_path(home.root, n).exists() else None
            for n in sorted(names)}


def protections(target: Target, home: Home, entries: list[ImageEntry]) -> Protections:
    """What keeps builds, read now: class terms, and instances launched from any of their AMIs per region."""
    by_region: dict[str, set[str]] = {}
    for entry in entries:
        for build in entry.builds:
            for region, ami in build.amis.items():
                by_region.setdefault(region, set()).add(ami)
    instances: dict[str, list[str]] = {}
    unchecked: dict[str, str] = {}
    for region, amis in sorted(by_region.items()):
        try:
            for inst in image_usage.instances_of(target.client("ec2", region), amis):
                instances.setdefault(inst["ImageId"], []).append(inst["InstanceId"])
        except Exception as exc:  # any failure: that region's builds are kept, and the plan says why
            unchecked[region] = _code(exc)
    return Protections({a: tuple(sorted(i)) for a, i in instances.items()}, class_terms(home, entries), unchecked)


def plan(home: Home, target: Target, cat: Catalog, names: tuple[str, ...], *, keep: int | None,
         older_than: int | None, now: datetime) -> tuple[ImagePlan, ...]:
    entries = [cat.image(n) for n in names] if names else [cat.images[n] for n in sorted(cat.images)]
    found = protections(target, home, entries)
    return tuple(retention.plan_image(e, rules_for(home, e.name).overridden(keep=keep, older_than=older_than), now,
                                      found) for e in entries)


def _delete_snapshots(ec2: Any, snapshots: tuple[str, ...]) -> tuple[list[str], list[str], list[str]]:
    """(deleted, kept because another AMI uses them, left to retry)."""
    deleted, in_use, left = [], [], []
    for snap in snapshots:
        try:
            ec2.delete_snapshot(SnapshotId=snap)
            deleted.append(snap)
        except Exception as exc:  # sorted by the code AWS answers; anything unexpected is retried next run
            code = _code(exc)
            if code.startswith("InvalidSnapshot.InUse"):
                in_use.append(snap)
            elif code.startswith("InvalidSnapshot.NotFound"):
                deleted.append(snap)
            else:
                left.append(snap)
    return deleted, in_use, left


def _snapshots_text(deleted: list[str], in_use: list[str], left: list[str]) -> str:
    parts = [f"deleted snapshots {', '.join(deleted)}" if deleted else "no snapshot to delete"]
    if in_use:
        parts.append(f"kept {', '.join(in_use)} (another AMI uses them)")
    if left:
        parts.append(f"could not delete {', '.join(left)} (retried next run)")
    return "; ".join(parts)


def carry_out(target: Target, path: Path, image: str, build: str, step: RegionStep, now: datetime) -> Outcome:
    """One region's change, then its record in the catalog (only once the change is done)."""
    ec2 = target.client("ec2", step.region)
    record: Callable[[Catalog], Catalog]
    if step.action == "deprecate":
        found = image_usage.image_or_none(ec2, step.ami or "")
        at = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
        if found is None:
            detail, record = _deregistered(image, build, step, now, (), "the AMI was already gone")
        elif found.get("DeprecationTime") and parse_time(found["DeprecationTime"]) <= at:
            when = stamp(parse_time(found["DeprecationTime"]))
            detail = f"already deprecated from {when}"
            record = lambda c: retention.record_deprecated(c, image, build, step.region, when)  # noqa: E731
        else:
            ec2.enable_image_deprecation(ImageId=step.ami, DeprecateAt=at)
            detail = f"deprecated {step.ami} from {stamp(at)}"
            record = lambda c: retention.record_deprecated(c, image, build, step.region, stamp(at))  # noqa: E731
    elif step.action == "deregister":
        found = image_usage.image_or_none(ec2, step.ami or "")
        snapshots = image_usage.snapshots_of(found) if found else _tagged_snapshots(ec2, build)
        if found is not None:
            ec2.deregister_image(ImageId=step.ami)
        deleted, in_use, left = _delete_snapshots(ec2, snapshots)
        gone = f"deregistered {step.ami}" if found else f"{step.ami} was already gone"
        detail, record = _deregistered(image, build, step, now, tuple(left),
                                       f"{gone}; {_snapshots_text(deleted, in_use, left)}")
    else:
        deleted, in_use, left = _delete_snapshots(ec2, step.snapshots)
        detail = _snapshots_text(deleted, in_use, left)
        record = lambda c: retention.record_snapshots_left(c, image, build, step.region, tuple(left))  # noqa: E731
    catalog_mod.update(path, record)
    return Outcome(image, build, step.region, step.action, True, detail)


def _deregistered(image: str, build: str, step: RegionStep, now: datetime, left: tuple[str, ...],
                  detail: str) -> tuple[str, Callable[[Catalog], Catalog]]:
    return detail, lambda c: retention.record_deregistered(c, image, build, step.region, stamp(now), left)


def _tagged_snapshots(ec2: Any, build: str) -> tuple[str, ...]:
    """The build's snapshots in this region by its tag (an AMI found gone: a run that stopped after deregistering)."""
    got = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": f"tag:{BUILD_ID_TAG}", "Values": [build]}])
    return tuple(s["SnapshotId"] for s in got["Snapshots"])


def prune(home: Home, names: tuple[str, ...] = (), *, keep: int | None = None, older_than: int | None = None,
          apply: bool = False, sandbox: bool = False, now: datetime | None = None,
          progress: Progress = lambda _l: None) -> PruneReport:
    """Plan, and with `apply` carry out, the retention of the named images (all when none is named)."""
    now = now or datetime.now(UTC)
    target = open_target(choose_target(sandbox=sandbox), home.emulator_dir)
    if target.sandbox:
        progress(SANDBOX_NOTICE.format(endpoint=target.endpoint, catalog=home.catalog_path("sandbox")))
    path = home.catalog_path(target.kind)
    plans = plan(home, target, catalog_mod.load(path), names, keep=keep, older_than=older_than, now=now)
    if not apply:
        return PruneReport(target.kind, False, plans)
    outcomes = []
    for image_plan in plans:
        for build in image_plan.builds:
            for step in (s for s in build.regions if s.changes):
                progress(f"prune: {image_plan.image} {build.build} {step.region}: {step.action} {step.ami or ''}")
                try:
                    outcomes.append(carry_out(target, path, image_plan.image, build.build, step, now))
                except Exception as exc:  # one region's failure is reported; the others go on; retried next run
                    outcomes.append(Outcome(image_plan.image, build.build, step.region, step.action, False, _code(exc)))
    return PruneReport(target.kind, True, plans, tuple(outcomes))

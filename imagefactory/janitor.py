"""The janitor's decisions: what the factory made and no longer accounts for, from what was observed. Pure.

Observed per region (`RegionScan`, read by `janitor_run`): instances, key pairs, security groups, and the
AMIs, snapshots and volumes tagged managed-by=imagefactory. `plan_region` turns one scan into findings
(each with its evidence and monthly cost) and the things it looked at and kept, each with the reason:

    build instance   tagged managed-by=imagefactory and imagefactory:role=build (Packer's build instance,
                     never a launched one), not terminated, older than the grace period (an hour)
    key pair         named packer_*, used by no instance, older than the grace period (its creation time,
                     else the time in Packer's time-ordered name)
    security group   named packer_*, used by no instance, older than the grace period (the time in its name)
    image            an AMI tagged managed-by=imagefactory that no build in the target's catalog records,
                     older than the grace period, with no instance launched from it; its snapshots go with it
    snapshot         tagged managed-by=imagefactory, used by no AMI, older than the grace period

Only what carries the factory's tag or Packer's naming is ever a finding, and nothing of a build of this
home still running on this machine (`Context.live_build_ids`), however old. In the sandbox the emulator is
this home's own, so the grace period is replaced by what is known exactly: while a sandbox build of this
home runs, nothing of Packer's that names no build is touched; everything else is judged at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from imagefactory import pricing
from imagefactory.tags import BUILD_ID_TAG, BUILD_ROLE_TAG, MANAGED_TAG, PACKER_PREFIX

GRACE_SECONDS = 3600.0
LIVE_STATES = frozenset({"pending", "running", "stopping", "stopped", "shutting-down"})
RUNNING_STATES = frozenset({"pending", "running"})
REMOVAL_ORDER = ("processes", "mounts", "rootfs", "build instance", "instance", "image", "snapshot",
                 "security group", "key pair", "instance disk")


@dataclass(frozen=True)
class Instance:
    id: str
    state: str
    type: str
    launched: datetime | None
    key_name: str | None
    group_ids: tuple[str, ...]
    image_id: str
    volume_ids: tuple[str, ...]
    tags: dict[str, str]


@dataclass(frozen=True)
class KeyPair:
    name: str
    created: datetime | None
    tags: dict[str, str]


@dataclass(frozen=True)
class Group:
    id: str
    name: str
    tags: dict[str, str]


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    created: datetime | None
    snapshot_ids: tuple[str, ...]
    tags: dict[str, str]


@dataclass(frozen=True)
class Snapshot:
    id: str
    size_gib: int
    started: datetime | None
    tags: dict[str, str]


@dataclass(frozen=True)
class RegionScan:
    """What one region holds: all instances (not terminated), key pairs and security groups; the images and
    snapshots this account owns with the factory's tag; volume types and sizes by id (for an instance's disks)."""

    region: str
    instances: tuple[Instance, ...] = ()
    key_pairs: tuple[KeyPair, ...] = ()
    groups: tuple[Group, ...] = ()
    images: tuple[Image, ...] = ()
    snapshots: tuple[Snapshot, ...] = ()
    volumes: dict[str, tuple[str, int]] = field(default_factory=dict)         # volume -> (type, GiB)
    snapshot_users: dict[str, tuple[str, ...]] = field(default_factory=dict)  # snapshot -> every own AMI using it


@dataclass(frozen=True)
class Context:
    """What the decisions need besides the scan: the time, which AMIs the catalog records, the grace."""

    now: datetime
    recorded_amis: frozenset[tuple[str, str]]      # (region, ami) of every build in the target's catalog
    sandbox: bool = False
    live_build_ids: frozenset[str] = frozenset()   # sandbox: builds of this home still running
    building: bool = False                          # sandbox: some build of this home is running
    grace_seconds: float = GRACE_SECONDS
    prices: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    """One thing the factory made and no longer accounts for, the evidence, and what it costs a month."""

    kind: str
    region: str
    id: str
    name: str
    evidence: str
    age_seconds: float | None = None
    monthly_usd: float | None = None
    cost: str = "unknown"                 # how the monthly figure was reached, or why it is unknown
    tags: dict[str, str] = field(default_factory=dict)
    snapshots: tuple[str, ...] = ()       # an image's snapshots, deleted after it is deregistered
    build_dir: str = ""                   # the dead sandbox build that left it (sandbox leftovers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        where = f" in {self.region}" if self.region else ""
        label = f"{self.id} ({self.name})" if self.name and self.name != self.id else self.id
        return f"{self.kind} {label}{where}"


@dataclass(frozen=True)
class Kept:
    """Something the janitor looked at and left alone, and why."""

    kind: str
    region: str
    id: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RegionPlan:
    region: str
    findings: tuple[Finding, ...] = ()
    kept: tuple[Kept, ...] = ()
    error: str | None = None     # the region could not be read (the others go on)


def tags_of(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags") or []}


def managed(tags: dict[str, str]) -> bool:
    return tags.get(MANAGED_TAG[0]) == MANAGED_TAG[1]


def packer_named(name: str) -> bool:
    return name.startswith(PACKER_PREFIX)


def packer_name_time(name: str) -> datetime | None:
    """The time in Packer's `packer_<time-ordered uuid>` names (the first 8 hex digits are Unix seconds)."""
    from datetime import UTC

    head = name.removeprefix(PACKER_PREFIX)[:8]
    if not packer_named(name) or len(head) != 8:
        return None
    try:
        return datetime.fromtimestamp(int(head, 16), UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _age(ctx: Context, when: datetime | None) -> float | None:
    return None if when is None else (ctx.now - when).total_seconds()


def _hold(ctx: Context, build: str, age: float | None) -> str | None:
    """Why something otherwise abandoned is kept: its build runs, or it may belong to one that does (AWS: too
    young to tell, another machine may be baking; the sandbox: a build of this home runs and it names none)."""
    if build and build in ctx.live_build_ids:
        return f"its build {build} is running"
    if ctx.sandbox:
        return "a sandbox build is running and this names no build" if ctx.building and not build else None
    if age is None or age < ctx.grace_seconds:
        return f"younger than {ctx.grace_seconds / 3600:g} h (a bake may still be using it)" if age is not None \
            else "its age is unknown (a bake may still be using it)"
    return None


def _snapshot_cost(ctx: Context, region: str, gib: float) -> tuple[float | None, str]:
    value = pricing.snapshot_month(ctx.prices, region, gib)
    return value, (f"{gib:g} GiB of snapshots" if value is not None else
                   f"unknown: no snapshot price for {region} in the bundled table")


def _instance_cost(ctx: Context, region: str, inst: Instance, scan: RegionScan) -> tuple[float | None, str]:
    volumes = [scan.volumes[v] for v in inst.volume_ids if v in scan.volumes]
    gib = sum(g for _, g in volumes)
    disks = pricing.volumes_month(ctx.prices, region, volumes)
    if inst.state not in RUNNING_STATES:
        return disks, (f"{gib} GiB of disks (stopped)" if disks is not None else
                       f"unknown: no volume price for {region} in the bundled table")
    hourly = pricing.table_price(ctx.prices, region, inst.type)
    running = pricing.running_month(hourly)
    if running is None or disks is None:
        return None, f"unknown: no price for {inst.type} or its disks in {region} in the bundled table"
    return round(running + disks, 2), f"{inst.type} ${hourly}/h x {pricing.HOURS_PER_MONTH} h + {gib} GiB of disks"


def _build_instances(scan: RegionScan, ctx: Context) -> tuple[list[Finding], list[Kept]]:
    found, kept = [], []
    for inst in scan.instances:
        role = inst.tags.get(BUILD_ROLE_TAG[0])
        if inst.state not in LIVE_STATES or not managed(inst.tags) or role != BUILD_ROLE_TAG[1]:
            continue
        age = _age(ctx, inst.launched)
        build = inst.tags.get(BUILD_ID_TAG, "")
        if reason := _hold(ctx, build, age):
            kept.append(Kept("build instance", scan.region, inst.id, reason))
        else:
            monthly, cost = _instance_cost(ctx, scan.region, inst, scan)
            found.append(Finding("build instance", scan.region, inst.id, inst.tags.get("Name", ""),
                                 f"Packer's build instance of build {build or '?'}, {inst.state}",
                                 age, monthly, cost, inst.tags))
    return found, kept


def _packer_things(scan: RegionScan, ctx: Context, going: set[str]) -> tuple[list[Finding], list[Kept]]:
    """`going`: instances found abandoned (removed first), which keep nothing of Packer's."""
    live = [i for i in scan.instances if i.state in LIVE_STATES and i.id not in going]
    found, kept = [], []
    things = [("key pair", k.name, k.name, k.created or packer_name_time(k.name), k.tags,
               sorted(i.id for i in live if i.key_name == k.name)) for k in scan.key_pairs if packer_named(k.name)]
    things += [("security group", g.id, g.name, packer_name_time(g.name), g.tags,
                sorted(i.id for i in live if g.id in i.group_ids)) for g in scan.groups if packer_named(g.name)]
    for kind, ident, name, created, tags, users in things:
        age = _age(ctx, created)
        if users:
            kept.append(Kept(kind, scan.region, ident, f"used by {', '.join(users)}"))
        elif reason := _hold(ctx, "", age):
            kept.append(Kept(kind, scan.region, ident, reason))
        else:
            found.append(Finding(kind, scan.region, ident, name,
                                 "Packer's naming, used by no instance", age, 0.0, "no charge", tags))
    return found, kept


def _images(scan: RegionScan, ctx: Context) -> tuple[list[Finding], list[Kept]]:
    sizes = {s.id: s.size_gib for s in scan.snapshots}
    found, kept = [], []
    for image in scan.images:
        if not managed(image.tags):
            continue
        age = _age(ctx, image.created)
        build = image.tags.get(BUILD_ID_TAG, "")
        users = sorted(i.id for i in scan.instances if i.image_id == image.id and i.state in LIVE_STATES)
        if (scan.region, image.id) in ctx.recorded_amis:
            continue
        if users:
            kept.append(Kept("image", scan.region, image.id, f"instances were launched from it: {', '.join(users)}"))
        elif reason := _hold(ctx, build, age):
            kept.append(Kept("image", scan.region, image.id, reason))
        else:  # its snapshots that no other AMI uses go with it
            mine = tuple(s for s in image.snapshot_ids if scan.snapshot_users.get(s, (image.id,)) == (image.id,))
            monthly, cost = _snapshot_cost(ctx, scan.region, sum(sizes.get(s, 0) for s in mine))
            found.append(Finding("image", scan.region, image.id, image.name,
                                 f"tagged {MANAGED_TAG[0]}={MANAGED_TAG[1]} (build {build or '?'}), "
                                 "recorded by no build in the catalog", age, monthly, cost, image.tags, mine))
    return found, kept


def _snapshots(scan: RegionScan, ctx: Context) -> tuple[list[Finding], list[Kept]]:
    found, kept = [], []
    for snap in scan.snapshots:
        if not managed(snap.tags) or scan.snapshot_users.get(snap.id):
            continue
        age = _age(ctx, snap.started)
        if reason := _hold(ctx, snap.tags.get(BUILD_ID_TAG, ""), age):
            kept.append(Kept("snapshot", scan.region, snap.id, reason))
        else:
            monthly, cost = _snapshot_cost(ctx, scan.region, snap.size_gib)
            found.append(Finding("snapshot", scan.region, snap.id, snap.tags.get("Name", ""),
                                 f"tagged {MANAGED_TAG[0]}={MANAGED_TAG[1]} "
                                 f"(build {snap.tags.get(BUILD_ID_TAG) or '?'}), used by no AMI",
                                 age, monthly, cost, snap.tags))
    return found, kept


def plan_region(scan: RegionScan, ctx: Context) -> RegionPlan:
    """Every finding of one region and what was kept, each with its reason."""
    instances, kept = _build_instances(scan, ctx)
    packer, held = _packer_things(scan, ctx, {f.id for f in instances})
    images, held_images = _images(scan, ctx)
    snapshots, held_snapshots = _snapshots(scan, ctx)
    return RegionPlan(scan.region, (*instances, *packer, *images, *snapshots),
                      (*kept, *held, *held_images, *held_snapshots))


def merge(plans: Iterable[RegionPlan], local: Iterable[Finding]) -> list[Finding]:
    """All findings, the sandbox's local leftovers first; a thing found twice is listed once (the leftover's
    record, which names the dead build, with the region rule's evidence and cost)."""
    out: dict[tuple[str, str], Finding] = {}
    for item in local:
        out[(item.region, item.id)] = item
    for plan in plans:
        for item in plan.findings:
            key = (item.region, item.id)
            if key in out:
                first = out[key]
                out[key] = Finding(first.kind, first.region, first.id, item.name or first.name,
                                   f"{first.evidence}; {item.evidence}", item.age_seconds, item.monthly_usd,
                                   item.cost, item.tags, item.snapshots, first.build_dir)
            else:
                out[key] = item
    return sorted(out.values(), key=removal_key)


def removal_key(item: Finding) -> tuple[int, str, str]:
    """Processes before the trees they run in, instances before their groups and key pairs, AMIs before
    their snapshots."""
    return REMOVAL_ORDER.index(item.kind), item.region, item.id


def monthly_total(findings: Iterable[Finding]) -> tuple[float, int]:
    """The sum of the known monthly costs, and how many findings have no known cost."""
    items = list(findings)
    return (round(sum(f.monthly_usd for f in items if f.monthly_usd is not None), 2),
            sum(f.monthly_usd is None for f in items))

"""The command `janitor`: observe each region (and the sandbox's machine), decide with `imagefactory.janitor`,
and with `delete` remove what was found.

Observing: per region, instances (not terminated), key pairs, security groups, this account's AMIs and
its snapshots tagged managed-by=imagefactory, and the types and sizes of build instances' volumes; a region that
cannot be read is reported and the others go on. In the sandbox also what dead builds left on this
machine and in the emulator (`imagefactory.sandbox.leftovers`, the finder `bake` and `sandbox.down` use)
and unpacked instance disks whose instance the emulator no longer has.

Removing re-checks each item's tag or name before touching it (only the factory's tag or Packer's naming),
removes in dependency order (processes before their trees, instances before their groups and key pairs,
AMIs before their snapshots), and goes on past a failure, which it reports; the next run finds it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imagefactory import catalog, timestamps
from imagefactory import janitor as plan
from imagefactory.cloud.image_usage import listed
from imagefactory.cloud.target import Target, check_regions
from imagefactory.errors import FactoryError
from imagefactory.home import Home
from imagefactory.janitor import Finding, RegionPlan, RegionScan
from imagefactory.result import Result
from imagefactory.sandbox.host import Progress
from imagefactory.tags import BUILD_ROLE_TAG, MANAGED_TAG
from imagefactory.waiting import WaitTimeout, wait_for

TERMINATE_TIMEOUT = 600.0  # seconds for terminated instances to let go of their security groups
LEFTOVER_KINDS = {"instance": "build instance"}   # leftovers' kinds, as the janitor names them
Ask = Callable[[str], None]  # asks before removing; raises to stop


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        return timestamps.parse(value)
    return None


def scan_region(target: Target, region: str) -> RegionScan:
    """What one region holds (see the module's docstring)."""
    ec2 = target.client("ec2", region)
    managed = [{"Name": f"tag:{MANAGED_TAG[0]}", "Values": [MANAGED_TAG[1]]}]
    live = [{"Name": "instance-state-name", "Values": sorted(plan.LIVE_STATES)}]
    instances = tuple(plan.Instance(
        i["InstanceId"], i["State"]["Name"], i.get("InstanceType", ""), _when(i.get("LaunchTime")), i.get("KeyName"),
        tuple(g["GroupId"] for g in i.get("SecurityGroups", [])), i.get("ImageId", ""),
        tuple(m["Ebs"]["VolumeId"] for m in i.get("BlockDeviceMappings", []) if "Ebs" in m), plan.tags_of(i))
        for r in listed(ec2, "describe_instances", "Reservations", Filters=live) for i in r["Instances"])
    keys = tuple(plan.KeyPair(k["KeyName"], _when(k.get("CreateTime")), plan.tags_of(k))
                 for k in ec2.describe_key_pairs()["KeyPairs"])
    groups = tuple(plan.Group(g["GroupId"], g["GroupName"], plan.tags_of(g))
                   for g in listed(ec2, "describe_security_groups", "SecurityGroups"))
    own = ec2.describe_images(Owners=["self"])["Images"]
    users: dict[str, tuple[str, ...]] = {}
    for image in own:
        for mapping in image.get("BlockDeviceMappings", []):
            if snap := mapping.get("Ebs", {}).get("SnapshotId"):
                users[snap] = (*users.get(snap, ()), image["ImageId"])
    images = tuple(plan.Image(i["ImageId"], i.get("Name", ""), _when(i.get("CreationDate")),
                              tuple(m["Ebs"]["SnapshotId"] for m in i.get("BlockDeviceMappings", [])
                                    if m.get("Ebs", {}).get("SnapshotId")), plan.tags_of(i))
                   for i in own if plan.managed(plan.tags_of(i)))
    snapshots = tuple(plan.Snapshot(s["SnapshotId"], int(s.get("VolumeSize", 0)), _when(s.get("StartTime")),
                                    plan.tags_of(s))
                      for s in listed(ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=managed))
    build_disks = [v for i in instances if i.tags.get(BUILD_ROLE_TAG[0]) == BUILD_ROLE_TAG[1] for v in i.volume_ids]
    disks = {v["VolumeId"]: (v.get("VolumeType", "standard"), int(v.get("Size", 0)))
             for v in (listed(ec2, "describe_volumes", "Volumes", VolumeIds=build_disks) if build_disks else [])}
    return RegionScan(region, instances, keys, groups, images, snapshots, disks, users)


def default_regions(home: Home, target: Target) -> tuple[str, ...]:
    """Where the factory may have made things: its catalog's regions, every recipe's, and the default ones."""
    from imagefactory.recipe.model import DEFAULT_REGIONS
    from imagefactory.recipe.recipefile import load_recipe

    cat = catalog.load(home.catalog_path(target.kind))
    found = {r for e in cat.images.values() for b in e.builds for r in b.amis} | set(DEFAULT_REGIONS)
    for path in sorted(home.recipes_dir.glob("*.yaml")):
        try:
            found.update(load_recipe(path).image.regions)
        except FactoryError:  # a broken recipe names no region; its bakes fail before making anything
            continue
    return tuple(sorted(found))


def recorded_amis(home: Home, target: Target) -> frozenset[tuple[str, str]]:
    cat = catalog.load(home.catalog_path(target.kind))
    return frozenset((r, ami) for e in cat.images.values() for b in e.builds for r, ami in b.amis.items())


# ---- the sandbox's own machine ---------------------------------------------------------------------------

def running_builds(home: Home, kind: str) -> frozenset[str]:
    """Ids of this home's builds still running on this machine: a sandbox build whose owner lives, or any
    build that records no owner (API-only, AWS) whose folder a process names (its Packer)."""
    from imagefactory.sandbox import leftovers
    from imagefactory.sandbox.buildroot import OWNER_FILE
    from imagefactory.sandbox.teardown import naming

    live = {d.name for d in leftovers.live_builds(home)} if kind == "sandbox" else set()
    for folder in home.builds_dir(kind).glob("*/*"):
        if folder.is_dir() and not (folder / OWNER_FILE).exists() and naming(folder):
            live.add(folder.name)
    return frozenset(live)


def local_leftovers(home: Home) -> list[Finding]:
    from imagefactory.sandbox import leftovers

    out = []
    for item in leftovers.find(home):
        kind = LEFTOVER_KINDS.get(item.kind, item.kind)
        cost = "no charge (this machine)" if not item.region else "no charge (the emulator)"
        out.append(Finding(kind, item.region, item.name, item.name if kind != "processes" else f"pids {item.name}",
                           f"left by the dead sandbox build {Path(item.build_dir).name} (its owner is gone)",
                           monthly_usd=0.0, cost=cost, build_dir=item.build_dir))
    return out


class DisksUnknown(Exception):
    """Not every region could be asked whether an instance lives: no disk is called an orphan."""


def orphan_disks(home: Home, target: Target) -> list[Finding]:
    """Unpacked sandbox instance disks whose instance the emulator no longer has (in any region)."""
    from imagefactory.sandbox import instances

    top = instances.instances_dir(home)
    ids = sorted({p.name.split(".")[0] for p in top.glob("i-*")}) if top.is_dir() else []
    if not ids:
        return []
    from botocore.exceptions import BotoCoreError, ClientError

    alive: set[str] = set()
    filters = [{"Name": "instance-id", "Values": ids},
               {"Name": "instance-state-name", "Values": sorted(plan.LIVE_STATES)}]
    try:
        for region in [r["RegionName"] for r in target.client("ec2", "us-east-1").describe_regions()["Regions"]]:
            reservations = target.client("ec2", region).describe_instances(Filters=filters)["Reservations"]
            alive.update(i["InstanceId"] for r in reservations for i in r["Instances"])
    except (ClientError, BotoCoreError) as exc:  # an instance may live where we could not look: keep every disk
        raise DisksUnknown(f"sandbox instance disks were not checked: the emulator did not answer ({exc})") from None
    return [Finding("instance disk", "", i, str(top / i), f"the emulator has no live instance {i} (terminated or "
                    "unknown); its unpacked disk is still on this machine", monthly_usd=0.0,
                    cost="no charge (this machine's disk)") for i in ids if i not in alive]


# ---- the command ------------------------------------------------------------------------------------------

def observe(home: Home, target: Target, regions: tuple[str, ...]) -> tuple[list[RegionPlan], list[Finding], list[str]]:
    """Each region's plan, the sandbox's local findings, and warnings about what could not be looked at."""
    from botocore.exceptions import BotoCoreError, ClientError

    from imagefactory.pricing import load_table

    live = running_builds(home, target.kind)
    ctx = plan.Context(datetime.now(UTC), recorded_amis(home, target), sandbox=target.sandbox,
                       live_build_ids=live, building=bool(live), prices=load_table())
    plans = []
    for region in regions:
        try:
            plans.append(plan.plan_region(scan_region(target, region), ctx))
        except (ClientError, BotoCoreError) as exc:
            plans.append(RegionPlan(region, error=f"{type(exc).__name__}: {exc}"))
    local: list[Finding] = []
    warnings: list[str] = []
    if target.sandbox:
        local += local_leftovers(home)
        try:
            local += orphan_disks(home, target)
        except DisksUnknown as exc:
            warnings.append(str(exc))
    return plans, local, warnings


def _allowed(item: Finding) -> bool:
    """The rule checked again right before anything is removed: the factory's tag or Packer's naming (or a
    dead sandbox build's own record of what it made)."""
    if item.build_dir or item.kind == "instance disk":
        return True
    if item.kind in ("key pair", "security group"):
        return plan.packer_named(item.name)
    if item.kind == "build instance":
        return plan.managed(item.tags) and item.tags.get(BUILD_ROLE_TAG[0]) == BUILD_ROLE_TAG[1]
    return item.kind in ("image", "snapshot") and plan.managed(item.tags)


def _terminated(target: Target, region: str, ids: list[str]) -> None:
    def done() -> bool:
        found = target.client("ec2", region).describe_instances(InstanceIds=ids)["Reservations"]
        return all(i["State"]["Name"] == "terminated" for r in found for i in r["Instances"])

    wait_for(done, timeout=TERMINATE_TIMEOUT, interval=5.0, what=f"instances {', '.join(ids)} to terminate")


def _remove_one(home: Home, target: Target, item: Finding) -> None:
    from imagefactory.sandbox import instances

    ec2 = target.client("ec2", item.region) if item.region else None
    if item.kind == "build instance" and ec2 is not None:
        ec2.terminate_instances(InstanceIds=[item.id])
    elif item.kind == "image" and ec2 is not None:
        ec2.deregister_image(ImageId=item.id)
        for snap in item.snapshots:
            ec2.delete_snapshot(SnapshotId=snap)
    elif item.kind == "snapshot" and ec2 is not None:
        ec2.delete_snapshot(SnapshotId=item.id)
    elif item.kind == "security group" and ec2 is not None:
        ec2.delete_security_group(GroupId=item.id)
    elif item.kind == "key pair" and ec2 is not None:
        ec2.delete_key_pair(KeyName=item.name)
    elif item.kind == "instance disk":
        instances.remove(home, item.id)
    else:
        raise FactoryError(f"do not know how to remove {item.describe()}")


def remove(home: Home, target: Target, found: list[Finding], progress: Progress) -> tuple[list[str], list[str]]:
    """Remove the findings (see the module's docstring); returns what was removed and what failed, and why."""
    from botocore.exceptions import BotoCoreError, ClientError

    from imagefactory.sandbox import leftovers

    removed, failed = [], []
    theirs = [f for f in found if f.build_dir]
    if theirs:  # a dead sandbox build's leftovers: removed as `sandbox.down --force` removes them
        items = [leftovers.Leftover({v: k for k, v in LEFTOVER_KINDS.items()}.get(f.kind, f.kind), f.id,
                                    f.build_dir, f.region) for f in theirs]
        try:
            left = {(i.region, i.name) for i in leftovers.remove(home, items, progress)}
        except FactoryError as exc:  # a process that survived SIGKILL, a mount that stays: the rest still goes
            failed.append(f"a dead sandbox build's leftovers: {exc}")
            progress(f"janitor: could not remove a dead sandbox build's leftovers: {exc}")
        else:
            removed += [f.describe() for f in theirs if (f.region, f.id) not in left]
            failed += [f"{f.describe()}: the emulator refused (see above)" for f in theirs if (f.region, f.id) in left]
    terminating: dict[str, list[str]] = {}
    for item in sorted((f for f in found if not f.build_dir), key=plan.removal_key):
        if not _allowed(item):
            failed.append(f"{item.describe()}: carries neither the factory's tag nor Packer's naming; not touched")
            continue
        try:
            if item.kind in ("security group", "key pair") and terminating.get(item.region):
                _terminated(target, item.region, terminating.pop(item.region))
            _remove_one(home, target, item)
        except (ClientError, BotoCoreError, FactoryError, WaitTimeout) as exc:
            failed.append(f"{item.describe()}: {exc}")
            progress(f"janitor: could not remove {item.describe()}: {exc}; it is found again next time")
            continue
        if item.kind == "build instance":
            terminating.setdefault(item.region, []).append(item.id)
        removed.append(item.describe())
        progress(f"janitor: removed {item.describe()}")
    return removed, failed


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.2f}"


def _text(target: Target, plans: list[RegionPlan], found: list[Finding], removed: list[str] | None,
          failed: list[str]) -> str:
    total, unknown = plan.monthly_total(found)
    lines = [f"janitor ({target.kind}), regions {', '.join(p.region for p in plans)}:"]
    if not found:
        lines.append("nothing left behind: everything the factory made is accounted for")
    for f in found:
        age = "" if f.age_seconds is None else f", {f.age_seconds / 3600:.1f} h old"
        price = f.cost if f.monthly_usd == 0 else f"{_money(f.monthly_usd)}/month ({f.cost})"
        lines.append(f"  {f.describe()}{age}: {f.evidence}; {price}")
    if found:
        more = f" (+{unknown} of unknown cost)" if unknown else ""
        lines.append(f"costing {_money(total)}/month{more}")
    if removed is None and found:
        lines.append("remove them with: invoke janitor --delete")
    elif removed is not None:
        lines.append(f"removed {len(removed)}, could not remove {len(failed)}")
        lines += [f"  not removed: {line}" for line in failed]
    return "\n".join(lines)


def _data(target: Target, plans: list[RegionPlan], found: list[Finding], removed: list[str] | None,
          failed: list[str]) -> dict[str, Any]:
    total, unknown = plan.monthly_total(found)
    return {"target": target.kind, "regions": [{"region": p.region, "error": p.error} for p in plans],
            "findings": [f.to_dict() for f in found], "kept": [k.to_dict() for p in plans for k in p.kept],
            "monthly_usd": total, "unknown_costs": unknown, "removed": removed, "failed": failed}


def janitor(home: Home, *, regions: Iterable[str] = (), sandbox: bool = False, delete: bool = False,
            ask: Ask | None = None, progress: Progress) -> Result:
    """The command `janitor`: what the factory made and no longer accounts for, per region, with the evidence
    and the monthly cost; with `delete`, removed (after `ask`, when given, agrees)."""
    from imagefactory.connect import open_catalog_target

    return run(home, open_catalog_target(home, sandbox, progress), regions=regions, delete=delete, ask=ask,
               progress=progress)


def run(home: Home, target: Target, *, regions: Iterable[str] = (), delete: bool = False, ask: Ask | None = None,
        progress: Progress) -> Result:
    """`janitor` on an open target."""
    chosen = check_regions(tuple(regions)) if tuple(regions) else default_regions(home, target)
    plans, local, warnings = observe(home, target, chosen)
    found = plan.merge(plans, local)
    removed: list[str] | None = None
    failed: list[str] = []
    if delete and found:
        if ask is not None:
            ask(f"remove these {len(found)} thing(s)?\n" + "\n".join(f"  {f.describe()}" for f in found))
        removed, failed = remove(home, target, found, progress)
    elif delete:
        removed = []
    result = Result(_data(target, plans, found, removed, failed), _text(target, plans, found, removed, failed))
    for p in plans:
        if p.error:
            result = result.warning(f"{p.region} could not be read ({p.error}); the other regions were")
    for line in [*warnings, *(f"not removed: {line}" for line in failed)]:
        result = result.warning(line)
    for p in plans:
        for k in p.kept:
            result = result.skipped(f"{k.kind} {k.id} in {k.region}", k.reason)
    return result


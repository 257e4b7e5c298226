"""What a crashed sandbox build leaves, found and removed.

A build records its owner (`owner.json`: pid and start time) and, while it holds resources in the
emulator, `cloud.json` (region, key pair) in its build folder. A build whose owner is gone is dead;
what it left is a leftover:

    build root      `<build dir>/rootfs` (hundreds of MB), any process still running in it (its
                    container's sshd, re-parented to init when the bake was killed) and any mount under it
    emulator        the build's key pair (`imagefactory-build-<id>`), the build instance Packer started
                    with it, and Packer's `packer_*` security group of that instance (or any `packer_*`
                    group or key pair while no build runs)

`find` lists them, `remove` removes them, `report` is what a sandbox bake says first, and
`stop_all_for_down` is what `sandbox.down` does before the emulator stops.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagefactory.cloud.image_usage import LIVE_STATES
from imagefactory.errors import SandboxError
from imagefactory.files import atomic_write
from imagefactory.home import Home
from imagefactory.result import Result
from imagefactory.sandbox import emulator, instances, teardown, trees
from imagefactory.sandbox.buildroot import OWNER_FILE, owner_alive
from imagefactory.sandbox.host import Progress
from imagefactory.sandbox.teardown import end, kill_processes, naming, processes_in
from imagefactory.tags import PACKER_PREFIX

CLOUD_FILE = "cloud.json"
BUILD_KEY_PREFIX = "imagefactory-build-"
REMOVE_COMMAND = "invoke sandbox.down --force"


@dataclass(frozen=True)
class Leftover:
    """One thing a dead build left: `kind` (processes, mounts, rootfs, instance, security group, key pair)."""

    kind: str
    name: str
    build_dir: str
    region: str = ""

    def describe(self) -> str:
        where = f" in {self.region}" if self.region else ""
        return f"{self.kind} {self.name}{where}"


def record_cloud(build_dir: Path, *, region: str, key_pair: str) -> None:
    atomic_write(build_dir / CLOUD_FILE, json.dumps({"region": region, "key_pair": key_pair}) + "\n")


def forget_cloud(build_dir: Path) -> None:
    (build_dir / CLOUD_FILE).unlink(missing_ok=True)


def build_dirs(home: Home) -> Iterator[Path]:
    """Every sandbox build folder that ever started a build root or took emulator resources."""
    top = home.builds_dir("sandbox")
    seen = set()
    for marker in (OWNER_FILE, CLOUD_FILE):
        for path in sorted(top.glob(f"*/*/{marker}")):
            if path.parent not in seen:
                seen.add(path.parent)
                yield path.parent


def sandbox_processes(home: Home) -> list[int]:
    """Every process running in a root filesystem of this home's sandbox (build roots and instances)."""
    roots = [d / "rootfs" for d in build_dirs(home)]
    roots += [p for p in instances.instances_dir(home).glob("i-*") if p.is_dir()]
    return sorted({pid for root in roots for pid in processes_in(root)})


def dead_builds(home: Home) -> list[Path]:
    return [d for d in build_dirs(home) if not owner_alive(d)]


def live_builds(home: Home) -> list[Path]:
    return [d for d in build_dirs(home) if owner_alive(d)]


def _ec2(home: Home, region: str) -> Any | None:
    """A client of the running emulator, or None when it does not run (nothing to ask then)."""
    from imagefactory.sandbox.emulator import sandbox_credentials, status

    info = status(home.emulator_dir)
    if info is None:
        return None
    import boto3

    creds = sandbox_credentials()
    return boto3.client("ec2", region_name=region, endpoint_url=info.endpoint,
                        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"])


def _cloud_of(build_dir: Path) -> dict[str, str] | None:
    try:
        data = json.loads((build_dir / CLOUD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("region") and data.get("key_pair") else None


def _cloud_leftovers(ec2: Any, build_dir: Path, region: str, key_pair: str, *, any_live: bool) -> list[Leftover]:
    found = []
    where = str(build_dir)
    if ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [key_pair]}])["KeyPairs"]:
        found.append(Leftover("key pair", key_pair, where, region))
    filters = [{"Name": "key-name", "Values": [key_pair]}, {"Name": "instance-state-name", "Values": list(LIVE_STATES)}]
    groups: set[str] = set()
    for reservation in ec2.describe_instances(Filters=filters)["Reservations"]:
        for inst in reservation["Instances"]:
            found.append(Leftover("instance", inst["InstanceId"], where, region))
            groups.update(g["GroupId"] for g in inst.get("SecurityGroups", [])
                          if g.get("GroupName", "").startswith(PACKER_PREFIX))
    if not any_live:  # Packer's group may exist before (or after) its instance: any is ours when no build runs
        groups.update(g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]
                      if g["GroupName"].startswith(PACKER_PREFIX))
        found += [Leftover("key pair", k["KeyName"], where, region) for k in ec2.describe_key_pairs()["KeyPairs"]
                  if k["KeyName"].startswith(PACKER_PREFIX)]
    found += [Leftover("security group", g, where, region) for g in sorted(groups)]
    return found


def find(home: Home) -> list[Leftover]:
    """Everything dead sandbox builds left on this machine and in the running emulator."""
    found: list[Leftover] = []
    any_live = bool(live_builds(home))
    for build_dir in dead_builds(home):
        rootfs = build_dir / "rootfs"
        cloud = _cloud_of(build_dir)
        if not rootfs.exists() and cloud is None:  # ended cleanly (or already cleaned): nothing to look for
            continue
        pids = sorted({*processes_in(rootfs), *naming(build_dir)})
        if pids:
            found.append(Leftover("processes", " ".join(map(str, pids)), str(build_dir)))
        if rootfs.exists() and (points := teardown.mounts_under(rootfs)):
            found.append(Leftover("mounts", " ".join(points), str(build_dir)))
        if rootfs.exists():
            found.append(Leftover("rootfs", str(rootfs), str(build_dir)))
        ec2 = _ec2(home, cloud["region"]) if cloud else None
        if cloud and ec2 is not None:
            found += _cloud_leftovers(ec2, build_dir, cloud["region"], cloud["key_pair"], any_live=any_live)
    return found


def remove(home: Home, found: list[Leftover], progress: Progress) -> list[Leftover]:
    """Remove leftovers `find` returned: processes, mounts and trees first, then instances, groups, key
    pairs. Returns those it could not remove (each said through `progress`; found again next time)."""
    from botocore.exceptions import BotoCoreError, ClientError

    order = {"processes": 0, "mounts": 1, "rootfs": 2, "instance": 3, "security group": 4, "key pair": 5}
    kept: set[str] = set()
    failed: list[Leftover] = []
    for item in sorted(found, key=lambda x: order[x.kind]):
        build_dir = Path(item.build_dir)
        if item.kind == "processes":
            kill_processes(build_dir / "rootfs")
            end(naming(build_dir))
        elif item.kind == "mounts":
            teardown.unmount_all(build_dir / "rootfs")
        elif item.kind == "rootfs":
            trees.unmount(Path(item.name))  # the tree (an overlay build root's mount too) and its layers
        else:
            ec2 = _ec2(home, item.region)
            try:
                if ec2 is None:
                    raise SandboxError("the emulator is not running")
                if item.kind == "instance":
                    ec2.terminate_instances(InstanceIds=[item.name])
                elif item.kind == "security group":
                    ec2.delete_security_group(GroupId=item.name)
                else:
                    ec2.delete_key_pair(KeyName=item.name)
            except (ClientError, BotoCoreError, SandboxError) as exc:
                kept.add(item.build_dir)
                failed.append(item)
                progress(f"sandbox: could not remove {item.describe()}: {exc}; it is found again next time")
                continue
        progress(f"sandbox: removed {item.describe()} (left by the dead build in {item.build_dir})")
    for build_dir in {item.build_dir for item in found} - kept:
        forget_cloud(Path(build_dir))
    return failed


def report(home: Home, progress: Progress) -> list[Leftover]:
    """Say what dead builds left, and the command that removes it (the first thing a sandbox bake says)."""
    found = find(home)
    if found:
        builds = sorted({Path(item.build_dir).name for item in found})
        progress(f"sandbox: {len(found)} leftover(s) of {len(builds)} crashed build(s) ({', '.join(builds)}): "
                 f"{'; '.join(item.describe() for item in found)}; remove them with: {REMOVE_COMMAND}")
    return found


def _mark_stopped(home: Home, ids: list[str]) -> None:
    """Tell the emulator that instances whose processes were ended are stopped (their disks are kept)."""
    ec2 = _ec2(home, "us-east-1") if ids else None
    if ec2 is None:
        return
    for region in [r["RegionName"] for r in ec2.describe_regions()["Regions"]]:
        client = _ec2(home, region)
        reservations = client.describe_instances(Filters=[{"Name": "instance-id", "Values": ids},
                                                          {"Name": "instance-state-name", "Values": ["running"]}])
        found = [i["InstanceId"] for r in reservations["Reservations"] for i in r["Instances"]]
        if found:
            client.stop_instances(InstanceIds=found)


def stop_all_for_down(home: Home, *, force: bool, progress: Progress) -> None:
    """Before the emulator stops: refuse while sandbox instances or builds run, or with `force` end every
    process the sandbox started (instances' sshd and JupyterLab, build roots' sshd; disks kept) and
    remove what dead builds left."""
    ids = instances.running(home)
    building = [d for d in live_builds(home) if processes_in(d / "rootfs")]
    if (ids or building) and not force:
        running = [*ids, *(f"build {d.name}" for d in building)]
        raise SandboxError(f"{len(running)} sandbox instance(s) or build(s) still running: {', '.join(running)}",
                           "terminate them (invoke terminate ID --yes), or pass --force to stop their processes")
    for instance_id in ids:
        instances.halt(home, instance_id)
        progress(f"sandbox: stopped the processes of {instance_id} (disk kept under {instances.instances_dir(home)})")
    _mark_stopped(home, ids)
    for build_dir in building:
        kill_processes(build_dir / "rootfs")
        progress(f"sandbox: ended the build root of the running build {build_dir.name}")
    for record in sorted(instances.instances_dir(home).glob("i-*.json")):  # a crashed start leaves processes
        root = instances.instances_dir(home) / record.stem
        if processes_in(root):
            kill_processes(root)
    found = find(home) if force else []
    if found:
        remove(home, found, progress)
    elif not force and dead_builds(home) and find(home):
        progress(f"sandbox: crashed builds left things behind; remove them with: {REMOVE_COMMAND}")


def shut_down(home: Home, *, force: bool, progress: Progress) -> Result:
    """The command `sandbox.down`: stop what runs in the sandbox (see `stop_all_for_down`), then the emulator
    (its state is kept and restored on the next start)."""
    stop_all_for_down(home, force=force, progress=progress)
    stopped = emulator.down(home.emulator_dir)
    return Result({"stopped": stopped}, "sandbox emulator stopped" if stopped else "sandbox emulator: not running")

"""What still uses or holds an AMI, through the EC2 API: instances launched from it (running or stopped),
its snapshots and their sizes; `listed`, every page of a listing. Read by `imagefactory.prune` (what protects
a build), `imagefactory.costs` and `imagefactory.janitor_run`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

LIVE_STATES = ("pending", "running", "stopping", "stopped")
_BATCH = 190  # filter values per request (EC2 allows 200)


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _BATCH):
        yield items[start:start + _BATCH]


def listed(client: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item under `key` of every page of a paginated `operation` (e.g. describe_snapshots, "Snapshots")."""
    return [item for page in client.get_paginator(operation).paginate(**kwargs) for item in page.get(key, [])]


def instances_of(ec2: Any, amis: Iterable[str]) -> list[dict[str, Any]]:
    """Every instance not terminated that was launched from one of `amis` (one region's client)."""
    found: list[dict[str, Any]] = []
    for chunk in _chunks(sorted(set(amis))):
        reservations = listed(ec2, "describe_instances", "Reservations", Filters=[
            {"Name": "image-id", "Values": chunk}, {"Name": "instance-state-name", "Values": list(LIVE_STATES)}])
        found += [i for r in reservations for i in r.get("Instances", [])]
    return found


def snapshots_of(image: dict[str, Any]) -> tuple[str, ...]:
    """The EBS snapshots an image's block device mappings name."""
    return tuple(m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", [])
                 if m.get("Ebs", {}).get("SnapshotId"))


def image_or_none(ec2: Any, ami: str) -> dict[str, Any] | None:
    """The AMI as DescribeImages reports it, or None when it no longer exists."""
    from botocore.exceptions import ClientError

    try:
        images = ec2.describe_images(ImageIds=[ami], IncludeDeprecated=True)["Images"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "").startswith("InvalidAMIID"):
            return None
        raise
    return images[0] if images else None


def snapshot_sizes(ec2: Any, snapshot_ids: Iterable[str]) -> dict[str, int]:
    """GiB per snapshot that exists (a missing one is left out)."""
    sizes: dict[str, int] = {}
    for snap in sorted(set(snapshot_ids)):
        try:
            got = ec2.describe_snapshots(SnapshotIds=[snap])["Snapshots"]
        except Exception as exc:  # a snapshot that is gone is not an error here; anything else is
            if "NotFound" in getattr(exc, "response", {}).get("Error", {}).get("Code", ""):
                continue
            raise
        sizes.update({s["SnapshotId"]: int(s["VolumeSize"]) for s in got})
    return sizes


def volume_sizes(ec2: Any, instance: dict[str, Any]) -> list[tuple[str, int]]:
    """(volume type, GiB) of each EBS volume attached to an instance."""
    ids = [m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("VolumeId")]
    if not ids:
        return []
    return [(v.get("VolumeType", "standard"), int(v["Size"])) for v in ec2.describe_volumes(VolumeIds=ids)["Volumes"]]

"""Images through the EC2 API: verify what a build made, look up base images, and remove a failed
build's leftovers (AMIs and their snapshots) so nothing is orphaned."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from imagefactory.cloud.target import Target
from imagefactory.errors import CloudError
from imagefactory.tags import BUILD_ID_TAG


def describe(target: Target, region: str, ami: str) -> dict[str, Any]:
    images = target.client("ec2", region).describe_images(ImageIds=[ami])["Images"]
    if not images:
        raise CloudError(f"AMI {ami} is not in {region}", "the build reported an AMI the cloud does not know")
    return images[0]


def tags_of(image: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in image.get("Tags", [])}


def base_by_name(target: Target, regions: tuple[str, ...], name: str, owner: str) -> dict[str, str]:
    """The base image of that exact name in each region (Canonical publishes one per region)."""
    found: dict[str, str] = {}
    for region in regions:
        images = target.client("ec2", region).describe_images(
            Owners=[owner], Filters=[{"Name": "name", "Values": [name]}])["Images"]
        if images:
            found[region] = images[0]["ImageId"]
    return found


def sweep_build(target: Target, regions: tuple[str, ...], build_id: str,
                progress: Callable[[str], None]) -> list[str]:
    """Deregister every AMI tagged with this build id, and delete its snapshots. Returns what was removed."""
    removed: list[str] = []
    for region in regions:
        ec2 = target.client("ec2", region)
        images = ec2.describe_images(Owners=["self"], Filters=[
            {"Name": f"tag:{BUILD_ID_TAG}", "Values": [build_id]}])["Images"]
        for image in images:
            ec2.deregister_image(ImageId=image["ImageId"])
            for mapping in image.get("BlockDeviceMappings", []):
                snap = mapping.get("Ebs", {}).get("SnapshotId")
                if snap:
                    ec2.delete_snapshot(SnapshotId=snap)
            removed.append(f"{region}:{image['ImageId']}")
            progress(f"cleanup: deregistered {image['ImageId']} in {region} (left by the failed build)")
    return removed

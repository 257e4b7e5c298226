"""What the emulator adds to moto for an AMI's later life (imagefactory.sandbox.image_lifecycle): deprecation,
disabling, deregistration with its snapshots, snapshots in use, and all of it across restarts — real boto3
against the real emulator, a student reached by assuming a role into their account."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import sandbox_client

from imagefactory.sandbox.emulator import EmulatorInfo, down, ensure_up
from imagefactory.sandbox.org import STUDENTS, role_arn

REGION = "us-west-2"


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "emulator"
    yield path
    down(path)


def owner(info: EmulatorInfo, service: str = "ec2") -> Any:
    return sandbox_client(info.endpoint, service, REGION)


def student(info: EmulatorInfo) -> Any:
    got = owner(info, "sts").assume_role(RoleArn=role_arn(STUDENTS[0]), RoleSessionName="student")["Credentials"]
    return boto3.client("ec2", region_name=REGION, endpoint_url=info.endpoint, aws_access_key_id=got["AccessKeyId"],
                        aws_secret_access_key=got["SecretAccessKey"], aws_session_token=got["SessionToken"])


def shared_image(ec2: Any, name: str) -> tuple[str, str]:
    """A new AMI shared with the first student; (AMI id, its snapshot id)."""
    base = ec2.describe_images(Owners=["099720109477"])["Images"][0]["ImageId"]
    ami = ec2.copy_image(SourceImageId=base, SourceRegion=REGION, Name=name)["ImageId"]
    ec2.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": STUDENTS[0]}]})
    (image,) = ec2.describe_images(ImageIds=[ami])["Images"]
    return ami, image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]


def code(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return err.value.response["Error"]["Code"]


def listed(ec2: Any, ami: str, **kwargs: Any) -> bool:
    return ami in {i["ImageId"] for i in ec2.describe_images(**kwargs)["Images"]}


def snapshot_exists(ec2: Any, snap: str) -> bool:
    return snap in {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}


def test_a_deprecated_ami_leaves_others_listings_launches_by_id_and_survives_a_restart(state: Path) -> None:
    info = ensure_up(state)
    ec2, other = owner(info), student(info)
    ami, snap = shared_image(ec2, "lifecycle-deprecated")
    assert listed(other, ami, ExecutableUsers=["self"])
    assert code(ec2.enable_image_deprecation, ImageId=ami, DeprecateAt=datetime.now(UTC) - timedelta(days=1)) \
        == "InvalidParameterValue"
    assert code(other.enable_image_deprecation, ImageId=ami, DeprecateAt=datetime.now(UTC)) == "AuthFailure"
    minute = datetime.now(UTC).replace(second=0, microsecond=0)  # EC2 rounds to the minute: this minute is now
    assert ec2.enable_image_deprecation(ImageId=ami, DeprecateAt=minute)["Return"] is True

    (seen,) = ec2.describe_images(ImageIds=[ami])["Images"]
    assert seen["DeprecationTime"] == minute.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert listed(ec2, ami, Owners=["self"]), "its owner still lists it"
    assert not listed(other, ami, ExecutableUsers=["self"]), "it left the student's listing"
    assert listed(other, ami, ExecutableUsers=["self"], IncludeDeprecated=True)
    assert listed(other, ami, ImageIds=[ami]), "by ID it is still there"
    launched = other.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]
    assert launched["ImageId"] == ami
    assert code(ec2.delete_snapshot, SnapshotId=snap) == "InvalidSnapshot.InUse"

    later, _ = shared_image(ec2, "lifecycle-later")
    future = minute + timedelta(days=30)
    ec2.enable_image_deprecation(ImageId=later, DeprecateAt=future + timedelta(seconds=20))
    assert listed(other, later, ExecutableUsers=["self"]), "not deprecated before its time"

    down(state)
    info = ensure_up(state)
    ec2, other = owner(info), student(info)
    assert ec2.describe_images(ImageIds=[ami])["Images"][0]["DeprecationTime"] == seen["DeprecationTime"]
    assert ec2.describe_images(ImageIds=[later])["Images"][0]["DeprecationTime"] == \
        future.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "seconds are rounded to the nearest minute"
    assert not listed(other, ami, ExecutableUsers=["self"])
    ec2.disable_image_deprecation(ImageId=ami)
    assert "DeprecationTime" not in ec2.describe_images(ImageIds=[ami])["Images"][0]
    assert listed(other, ami, ExecutableUsers=["self"])


def test_snapshots_outlive_a_plain_deregistration_across_restarts_and_go_when_asked(state: Path) -> None:
    info = ensure_up(state)
    ec2 = owner(info)
    kept, kept_snap = shared_image(ec2, "lifecycle-kept-snapshot")
    gone, gone_snap = shared_image(ec2, "lifecycle-gone-snapshot")
    ec2.create_tags(Resources=[kept_snap], Tags=[{"Key": "imagefactory:build-id", "Value": "b1"}])

    ec2.deregister_image(ImageId=kept)
    answer = ec2.deregister_image(ImageId=gone, DeleteAssociatedSnapshots=True)
    assert answer["DeleteSnapshotResults"] == [{"SnapshotId": gone_snap, "ReturnCode": "success"}]
    assert snapshot_exists(ec2, kept_snap) and not snapshot_exists(ec2, gone_snap)

    down(state)
    ec2 = owner(ensure_up(state))
    assert snapshot_exists(ec2, kept_snap), "a deregistered AMI's snapshot is still there after a restart"
    assert not snapshot_exists(ec2, gone_snap)
    assert not listed(ec2, kept, Owners=["self"])
    found = ec2.describe_snapshots(Filters=[{"Name": "tag:imagefactory:build-id", "Values": ["b1"]}])["Snapshots"]
    assert [(s["SnapshotId"], s["VolumeSize"]) for s in found] == [(kept_snap, 15)]
    ec2.delete_snapshot(SnapshotId=kept_snap)
    down(state)
    assert not snapshot_exists(owner(ensure_up(state)), kept_snap)


def test_a_disabled_ami_loses_its_permissions_leaves_listings_and_cannot_launch(state: Path) -> None:
    info = ensure_up(state)
    ec2, other = owner(info), student(info)
    ami, _ = shared_image(ec2, "lifecycle-disabled")
    assert code(other.disable_image, ImageId=ami) == "AuthFailure"
    ec2.disable_image(ImageId=ami)
    assert not listed(ec2, ami, Owners=["self"])
    (seen,) = ec2.describe_images(ImageIds=[ami], IncludeDisabled=True)["Images"]
    assert seen["State"] == "disabled"
    assert ec2.describe_image_attribute(ImageId=ami, Attribute="launchPermission")["LaunchPermissions"] == []
    assert code(ec2.run_instances, ImageId=ami, MinCount=1, MaxCount=1) == "InvalidAMIID.Unavailable"
    down(state)
    ec2, other = owner(ensure_up(state)), student(ensure_up(state))
    assert ec2.describe_images(ImageIds=[ami], IncludeDisabled=True)["Images"][0]["State"] == "disabled"
    ec2.enable_image(ImageId=ami)
    assert listed(ec2, ami, Owners=["self"])
    assert not listed(other, ami, ExecutableUsers=["self"]), "EnableImage does not give the permissions back"

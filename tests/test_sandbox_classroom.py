"""The emulator's classroom: an organization, student accounts reached by assuming a role, KMS keys, and what
AWS enforces about shared images (visibility, ARN forms, keys) — real boto3 against the real emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import sandbox_client

from imagefactory.errors import SandboxError
from imagefactory.sandbox.contents import build_of
from imagefactory.sandbox.emulator import SANDBOX_ACCOUNT_ID, EmulatorInfo, down, ensure_up
from imagefactory.sandbox.org import (
    CLASS_KEY_ALIAS,
    ORG_ARN,
    OTHER_MEMBER,
    OU_ARN,
    OUTSIDER,
    STUDENTS,
    key_arn,
    role_arn,
)

REGION = "us-west-2"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorInfo]:
    state = tmp_path_factory.mktemp("classroom") / "emulator"
    info = ensure_up(state)
    yield info
    down(state)


def owner(info: EmulatorInfo, service: str = "ec2") -> Any:
    return sandbox_client(info.endpoint, service, REGION)


def as_account(info: EmulatorInfo, account: str, service: str = "ec2") -> Any:
    got = owner(info, "sts").assume_role(RoleArn=role_arn(account), RoleSessionName="student")["Credentials"]
    return boto3.client(service, region_name=REGION, endpoint_url=info.endpoint,
                        aws_access_key_id=got["AccessKeyId"], aws_secret_access_key=got["SecretAccessKey"],
                        aws_session_token=got["SessionToken"])


def new_image(info: EmulatorInfo, **copy: Any) -> str:
    ec2 = owner(info)
    base = ec2.describe_images(Owners=["099720109477"])["Images"][0]["ImageId"]
    return ec2.copy_image(SourceImageId=base, SourceRegion=REGION, Name=f"img-{len(copy)}-{id(copy)}",
                          **copy)["ImageId"]


def launched(ec2: Any, ami: str) -> dict[str, Any]:
    """Launch one instance of `ami` and describe it afterwards: its state, and why (StateReason)."""
    instance_id = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0][
        "InstanceId"]
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def error_code(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return err.value.response["Error"]["Code"]


def test_the_organization_has_the_ou_and_the_students(emulator: EmulatorInfo) -> None:
    org = owner(emulator, "organizations")
    assert org.describe_organization()["Organization"]["Arn"] == ORG_ARN
    ou_id = OU_ARN.rpartition("/")[2]
    inside = {a["Id"] for a in org.list_accounts_for_parent(ParentId=ou_id)["Accounts"]}
    assert inside == set(STUDENTS)
    assert OTHER_MEMBER in {a["Id"] for a in org.list_accounts()["Accounts"]}
    identity = as_account(emulator, STUDENTS[0], "sts").get_caller_identity()
    assert identity["Account"] == STUDENTS[0]


def test_both_keys_exist_with_fixed_ids(emulator: EmulatorInfo) -> None:
    kms = owner(emulator, "kms")
    assert kms.describe_key(KeyId=CLASS_KEY_ALIAS)["KeyMetadata"]["Arn"] == key_arn(REGION, CLASS_KEY_ALIAS)
    ebs = kms.describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]
    assert ebs["KeyManager"] == "AWS" and ebs["Arn"] == key_arn(REGION, "alias/aws/ebs")


@pytest.mark.parametrize(("permission", "allowed", "refused"), [
    ({"UserId": STUDENTS[0]}, STUDENTS[0], STUDENTS[1]),
    ({"OrganizationArn": ORG_ARN}, OTHER_MEMBER, OUTSIDER),
    ({"OrganizationalUnitArn": OU_ARN}, STUDENTS[2], OTHER_MEMBER),
])
def test_an_image_is_seen_and_launched_only_while_shared(emulator: EmulatorInfo, permission: dict[str, str],
                                                         allowed: str, refused: str) -> None:
    ami = new_image(emulator)
    student, outsider = as_account(emulator, allowed), as_account(emulator, refused)
    assert error_code(student.describe_images, ImageIds=[ami]) == "InvalidAMIID.NotFound"
    owner(emulator).modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [permission]})
    assert [i["ImageId"] for i in student.describe_images(ImageIds=[ami])["Images"]] == [ami]
    assert ami in {i["ImageId"] for i in student.describe_images(ExecutableUsers=["self"])["Images"]}
    assert launched(student, ami)["State"]["Name"] == "running"
    assert error_code(outsider.describe_images, ImageIds=[ami]) == "InvalidAMIID.NotFound"
    assert error_code(outsider.run_instances, ImageId=ami, MinCount=1, MaxCount=1) == "InvalidAMIID.NotFound"
    assert error_code(student.modify_image_attribute, ImageId=ami,
                      LaunchPermission={"Add": [{"UserId": refused}]}) == "AuthFailure"
    owner(emulator).modify_image_attribute(ImageId=ami, LaunchPermission={"Remove": [permission]})
    assert error_code(student.describe_images, ImageIds=[ami]) == "InvalidAMIID.NotFound"
    assert error_code(student.run_instances, ImageId=ami, MinCount=1, MaxCount=1) == "InvalidAMIID.NotFound"


def test_a_shared_image_shows_the_owners_tags_to_the_owner_only(emulator: EmulatorInfo) -> None:
    ami = new_image(emulator)
    tags = [{"Key": "imagefactory:build-id", "Value": "20261202-000000-abcd"}, {"Key": "Name", "Value": "hydro"}]
    owner(emulator).create_tags(Resources=[ami], Tags=tags)
    owner(emulator).modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": STUDENTS[0]}]})
    mine = owner(emulator).describe_images(ImageIds=[ami])["Images"][0]
    assert sorted(mine["Tags"], key=lambda t: t["Key"]) == sorted(tags, key=lambda t: t["Key"])
    student = as_account(emulator, STUDENTS[0])
    seen = student.describe_images(ImageIds=[ami])["Images"][0]
    assert seen["ImageId"] == ami and seen["OwnerId"] == SANDBOX_ACCOUNT_ID and seen.get("Tags", []) == []
    assert seen["BlockDeviceMappings"] == mine["BlockDeviceMappings"] and seen["Name"] == mine["Name"]
    listed = student.describe_images(ExecutableUsers=["self"])["Images"]
    assert [i.get("Tags", []) for i in listed if i["ImageId"] == ami] == [[]]
    by_tag = [{"Name": "tag:imagefactory:build-id", "Values": ["20261202-000000-abcd"]}]
    assert [i["ImageId"] for i in owner(emulator).describe_images(Filters=by_tag)["Images"]] == [ami]
    assert student.describe_images(Filters=by_tag)["Images"] == []
    assert student.describe_images(Filters=[{"Name": "tag-key", "Values": ["Name"]}])["Images"] == []
    assert [i["ImageId"] for i in student.describe_images(Filters=[{"Name": "image-id", "Values": [ami]}])[
        "Images"]] == [ami]


def test_the_data_plane_finds_the_build_a_copy_holds_for_the_accounts_that_may_launch_it(
        emulator: EmulatorInfo) -> None:
    source = new_image(emulator)
    owner(emulator).create_tags(Resources=[source], Tags=[{"Key": "imagefactory:build-id", "Value": "b-1"}])
    copy = owner(emulator).copy_image(SourceImageId=source, SourceRegion=REGION, Name="untagged-copy")["ImageId"]
    assert owner(emulator).describe_images(ImageIds=[copy])["Images"][0].get("Tags", []) == []
    assert build_of(emulator.endpoint, REGION, copy, SANDBOX_ACCOUNT_ID) == "b-1"
    with pytest.raises(SandboxError) as err:  # not shared with the student: as if it did not exist
        build_of(emulator.endpoint, REGION, copy, STUDENTS[0])
    assert err.value.message == (f"{copy} in {REGION} is not the image of a sandbox build (no imagefactory:build-id, "
                                 "nor copied from one)")
    owner(emulator).modify_image_attribute(ImageId=copy, LaunchPermission={"Add": [{"UserId": STUDENTS[0]}]})
    assert build_of(emulator.endpoint, REGION, copy, STUDENTS[0]) == "b-1"
    base = owner(emulator).describe_images(Owners=["099720109477"])["Images"][0]["ImageId"]
    with pytest.raises(SandboxError):  # a seeded Ubuntu image holds no build
        build_of(emulator.endpoint, REGION, base, SANDBOX_ACCOUNT_ID)


@pytest.mark.parametrize("permission", [
    {"OrganizationArn": "o-a1b2c3d4e5"},
    {"OrganizationArn": OU_ARN},
    {"OrganizationalUnitArn": "ou-a1b2-students"},
    {"UserId": "12345"},
])
def test_malformed_launch_permissions_are_refused_and_change_nothing(emulator: EmulatorInfo,
                                                                     permission: dict[str, str]) -> None:
    ami = new_image(emulator)
    ec2 = owner(emulator)
    code = error_code(ec2.modify_image_attribute, ImageId=ami,
                      LaunchPermission={"Add": [{"UserId": STUDENTS[0]}, permission]})
    assert code == "InvalidAMIAttributeItemValue"
    assert ec2.describe_image_attribute(ImageId=ami, Attribute="launchPermission")["LaunchPermissions"] == []


def snapshot_of(info: EmulatorInfo, ami: str) -> dict[str, Any]:
    ec2 = owner(info)
    image = ec2.describe_images(ImageIds=[ami])["Images"][0]
    snap_id = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    return ec2.describe_snapshots(SnapshotIds=[snap_id])["Snapshots"][0]


def test_an_image_on_the_aws_managed_key_cannot_be_launched_by_another_account(emulator: EmulatorInfo) -> None:
    ami = new_image(emulator, Encrypted=True)
    snapshot = snapshot_of(emulator, ami)
    assert snapshot["Encrypted"] and snapshot["KmsKeyId"] == key_arn(REGION, "alias/aws/ebs")
    owner(emulator).modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": STUDENTS[0]}]})
    student = as_account(emulator, STUDENTS[0])
    assert student.describe_images(ImageIds=[ami])["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["Encrypted"]
    instance = launched(student, ami)
    assert instance["State"]["Name"] == "terminated"
    assert instance["StateReason"]["Code"] == "Client.InternalError"


def test_a_class_key_image_launches_once_the_student_has_a_grant(emulator: EmulatorInfo) -> None:
    ami = new_image(emulator, Encrypted=True, KmsKeyId=CLASS_KEY_ALIAS)
    assert snapshot_of(emulator, ami)["KmsKeyId"] == key_arn(REGION, CLASS_KEY_ALIAS)
    owner(emulator).modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": STUDENTS[1]}]})
    student = as_account(emulator, STUDENTS[1])
    assert launched(student, ami)["State"]["Name"] == "terminated"
    owner(emulator, "kms").create_grant(KeyId=key_arn(REGION, CLASS_KEY_ALIAS),
                                        GranteePrincipal=f"arn:aws:iam::{STUDENTS[1]}:root",
                                        Operations=["Decrypt", "CreateGrant", "DescribeKey"])
    assert launched(student, ami)["State"]["Name"] == "running"


def test_shares_and_grants_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "emulator"
    info = ensure_up(state)
    try:
        ami = new_image(info, Encrypted=True, KmsKeyId=CLASS_KEY_ALIAS)
        owner(info).modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"OrganizationalUnitArn": OU_ARN}]})
        owner(info, "kms").create_grant(KeyId=CLASS_KEY_ALIAS, GranteePrincipal=f"arn:aws:iam::{STUDENTS[2]}:root",
                                        Operations=["Decrypt"])
        tagged = new_image(info)
        owner(info).create_tags(Resources=[tagged], Tags=[{"Key": "imagefactory:build-id", "Value": "b-2"}])
        copy = owner(info).copy_image(SourceImageId=tagged, SourceRegion=REGION, Name="copy-kept")["ImageId"]
        students = as_account(info, STUDENTS[2]).run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0][
            "InstanceId"]  # another account's instance is kept too
        gone = new_image(info)  # an instance of an image deregistered since is still restored
        kept = owner(info).run_instances(ImageId=gone, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        owner(info).deregister_image(ImageId=gone)
        down(state)
        info = ensure_up(state)
        assert not info.reused
        assert owner(info).describe_instances(InstanceIds=[kept])["Reservations"][0]["Instances"][0]["ImageId"] == gone
        student = as_account(info, STUDENTS[2])
        kept_too = student.describe_instances(InstanceIds=[students])["Reservations"][0]["Instances"][0]
        assert (kept_too["ImageId"], kept_too["State"]["Name"]) == (ami, "running")
        assert owner(info).describe_instances(Filters=[{"Name": "instance-id", "Values": [students]}])[
            "Reservations"] == []  # still the student's, not the owner's
        assert launched(student, ami)["State"]["Name"] == "running"
        grants = owner(info, "kms").list_grants(KeyId=key_arn(REGION, CLASS_KEY_ALIAS))["Grants"]
        assert [g["GranteePrincipal"] for g in grants] == [f"arn:aws:iam::{STUDENTS[2]}:root"]
        assert build_of(info.endpoint, REGION, copy, SANDBOX_ACCOUNT_ID) == "b-2"  # the copy's source is kept
        assert SANDBOX_ACCOUNT_ID in ORG_ARN
    finally:
        down(state)

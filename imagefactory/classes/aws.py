"""The EC2 and KMS calls of sharing, one region at a time: read what AWS reports, copy, apply, grant.

Thin: every decision is in `plan`; these functions only read and write. Each takes the region's clients.
"""

from __future__ import annotations

import json
from typing import Any

from imagefactory.classes.plan import USER, Encryption, Entry, RegionPlan, entries
from imagefactory.errors import ClassError
from imagefactory.waiting import WaitTimeout, wait_for

GRANT_OPERATIONS = ["Decrypt", "DescribeKey", "CreateGrant", "ReEncryptFrom", "ReEncryptTo",
                    "GenerateDataKeyWithoutPlaintext"]
COPY_TIMEOUT = 1800.0


def grant_name(class_name: str) -> str:
    return f"imagefactory-class-{class_name}"


def image(ec2: Any, ami: str) -> dict[str, Any] | None:
    try:
        found = ec2.describe_images(ImageIds=[ami])["Images"]
    except ec2.exceptions.ClientError as exc:
        if "InvalidAMIID" in str(exc):
            return None
        raise
    return found[0] if found else None


def snapshot_ids(img: dict[str, Any]) -> list[str]:
    return [m["Ebs"]["SnapshotId"] for m in img.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")]


def encryption(ec2: Any, kms: Any, img: dict[str, Any]) -> Encryption:
    """How the image's snapshots are encrypted (the first encrypted one decides)."""
    snaps = snapshot_ids(img)
    for snap in ec2.describe_snapshots(SnapshotIds=snaps)["Snapshots"] if snaps else []:
        if snap.get("Encrypted"):
            key = snap.get("KmsKeyId")
            meta = kms.describe_key(KeyId=key)["KeyMetadata"] if key else {"KeyManager": "AWS", "Arn": None}
            return Encryption(True, meta["Arn"], aws_managed=meta["KeyManager"] == "AWS")
    return Encryption(False)


def key_arn(kms: Any, ref: str) -> str:
    try:
        meta = kms.describe_key(KeyId=ref)["KeyMetadata"]
    except kms.exceptions.ClientError as exc:
        raise ClassError(f"KMS key {ref} cannot be used: {exc}", "check kms_key in the class roster") from None
    if meta.get("KeyManager") == "AWS":
        raise ClassError(f"KMS key {ref} is AWS-managed: no other account can use it",
                         "name a customer-managed key in kms_key")
    return str(meta["Arn"])


def copy(ec2: Any, *, source: dict[str, Any], source_region: str, name: str, key: str | None,
         class_name: str) -> dict[str, Any]:
    """CopyImage into this region (encrypted with `key` when given), tags carried over; waits until available
    and returns the copy as DescribeImages reports it."""
    kwargs: dict[str, Any] = {"Encrypted": True, "KmsKeyId": key} if key else {}
    ami = ec2.copy_image(SourceImageId=source["ImageId"], SourceRegion=source_region, Name=name,
                         Description=f"{source.get('Description') or name} (class {class_name})", **kwargs)["ImageId"]
    tags = [t for t in source.get("Tags", []) if not t["Key"].startswith("aws:")]
    ec2.create_tags(Resources=[ami], Tags=[*tags, {"Key": "imagefactory:class", "Value": class_name},
                                           {"Key": "imagefactory:copy-of", "Value": source["ImageId"]}])
    def available() -> dict[str, Any] | None:
        found = image(ec2, ami)
        return found if found is not None and found.get("State") == "available" else None

    try:
        return wait_for(available, timeout=COPY_TIMEOUT, interval=5, what=f"copy {ami}")
    except WaitTimeout as exc:
        raise ClassError(f"{exc}", "re-run share later; the copy is reused once available") from None


def launch_entries(ec2: Any, ami: str) -> frozenset[Entry]:
    perms = ec2.describe_image_attribute(ImageId=ami, Attribute="launchPermission").get("LaunchPermissions", [])
    return entries(perms)


def copy_users(ec2: Any, snapshots: list[str]) -> frozenset[str]:
    users: set[str] = set()
    for snap in snapshots:
        got = ec2.describe_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")
        users |= {p["UserId"] for p in got.get("CreateVolumePermissions", []) if "UserId" in p}
    return frozenset(users)


def apply(ec2: Any, plan: RegionPlan, snapshots: list[str]) -> int:
    """ModifyImageAttribute in batches (adds, then removes), then the snapshots' createVolumePermission.
    Returns the number of write calls made."""
    calls = 0
    for which in ("add", "remove"):
        for batch in plan.batches(which):
            ec2.modify_image_attribute(ImageId=plan.ami, LaunchPermission={which.capitalize(): batch})
            calls += 1
    for operation, users in (("add", plan.copy_add), ("remove", plan.copy_remove)):
        for snap in snapshots if users else []:
            ec2.modify_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission",
                                          OperationType=operation, UserIds=list(users))
            calls += 1
    return calls


def converge_grants(kms: Any, key: str, class_name: str, accounts: set[str], *, dry_run: bool) -> tuple[int, int]:
    """A grant on `key` per account, named for the class; grants of accounts no longer listed are revoked.
    Returns (created, revoked)."""
    mine = [g for g in kms.list_grants(KeyId=key).get("Grants", []) if g.get("Name") == grant_name(class_name)]
    have = {g["GranteePrincipal"].split(":")[4]: g for g in mine if g["GranteePrincipal"].count(":") >= 5}
    create = sorted(accounts - set(have))
    revoke = [g for account, g in have.items() if account not in accounts]
    if not dry_run:
        for account in create:
            kms.create_grant(KeyId=key, GranteePrincipal=f"arn:aws:iam::{account}:root", Operations=GRANT_OPERATIONS,
                             Name=grant_name(class_name))
        for grant in revoke:
            kms.revoke_grant(KeyId=key, GrantId=grant["GrantId"])
    return len(create), len(revoke)


def key_policy_statement(class_name: str, organization: str | None, ous: tuple[str, ...]) -> str:
    """The key-policy statement that lets an organization's or OUs' accounts use the class key (grants cannot
    name an organization): for the instructor to add when the factory may not change the policy."""
    condition: dict[str, Any] = {}
    if organization:
        condition["StringEquals"] = {"aws:PrincipalOrgID": organization.rpartition("/")[2]}
    if ous:
        paths = [f"{ou.split('/')[1]}/*/{ou.rpartition('/')[2]}/*" for ou in ous]
        condition["ForAnyValue:StringLike"] = {"aws:PrincipalOrgPaths": paths}
    statement = {"Sid": f"ImagefactoryClass{class_name.replace('-', '')}", "Effect": "Allow",
                 "Principal": {"AWS": "*"}, "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:CreateGrant",
                                                      "kms:ReEncrypt*", "kms:GenerateDataKeyWithoutPlaintext"],
                 "Resource": "*", "Condition": condition}
    return json.dumps(statement, sort_keys=True)


def student_accounts(plan_entries: frozenset[Entry]) -> set[str]:
    return {value for kind, value in plan_entries if kind == USER}


def deregister(ec2: Any, ami: str) -> None:
    img = image(ec2, ami)
    if img is None:
        return
    ec2.deregister_image(ImageId=ami)
    for snap in snapshot_ids(img):
        ec2.delete_snapshot(SnapshotId=snap)

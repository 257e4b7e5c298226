"""The EC2 and KMS calls of sharing, one region at a time: read what AWS reports, copy, apply, grant.

Thin: every decision is in `plan`; these functions only read and write. Each takes the region's clients.
Calls of one region that do not depend on each other (the batches of one direction, the snapshots'
permissions, the grants) are made at once, at most `workers` at a time (`IN_REGION_WORKERS`; 1: one after the
other); every one is waited for, and the first failure is raised once all have ended.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from imagefactory.classes.plan import USER, Encryption, Entry, RegionPlan, entries
from imagefactory.errors import ClassError
from imagefactory.waiting import WaitTimeout, wait_for

GRANT_OPERATIONS = ["Decrypt", "DescribeKey", "CreateGrant", "ReEncryptFrom", "ReEncryptTo",
                    "GenerateDataKeyWithoutPlaintext"]
COPY_TIMEOUT = 1800.0
# Independent calls of one region at once: enough to hide the latency of a class's batches and grants,
# few, as AWS's request rates are per region (KMS CreateGrant: 50 per second); a throttled call is retried
# by botocore.
IN_REGION_WORKERS = 4
T = TypeVar("T")


def at_once(calls: list[Callable[[], T]], workers: int | None = None) -> list[T]:
    """Each call's result, in order; the calls are made at once, at most `workers` at a time. All are waited
    for before the first failure (in order) is raised, so none is left running."""
    limit = min(workers or IN_REGION_WORKERS, len(calls))
    if limit <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=limit) as pool:
        futures = [pool.submit(call) for call in calls]
    return [f.result() for f in futures]


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
    tags = [t for t in source.get("Tags", []) if not t["Key"].startswith("aws:")]
    tags += [{"Key": "imagefactory:class", "Value": class_name}, {"Key": "imagefactory:copy-of",
                                                                   "Value": source["ImageId"]}]
    ami = ec2.copy_image(SourceImageId=source["ImageId"], SourceRegion=source_region, Name=name,
                         Description=f"{source.get('Description') or name} (class {class_name})",
                         TagSpecifications=[{"ResourceType": "image", "Tags": tags}], **kwargs)["ImageId"]

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


def copy_users(ec2: Any, snapshots: list[str], workers: int | None = None) -> frozenset[str]:
    def users_of(snap: str) -> set[str]:
        got = ec2.describe_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")
        return {p["UserId"] for p in got.get("CreateVolumePermissions", []) if "UserId" in p}

    return frozenset().union(*at_once([partial(users_of, snap) for snap in snapshots], workers))


def apply(ec2: Any, plan: RegionPlan, snapshots: list[str], workers: int | None = None) -> int:
    """ModifyImageAttribute in batches (the removes, then the adds: the quota is never passed on the way; the
    batches of each at once), then the snapshots' createVolumePermission. Returns the number of write calls."""
    calls = 0
    for which in ("Remove", "Add"):
        batches = plan.batches(which.lower())
        at_once([partial(ec2.modify_image_attribute, ImageId=plan.ami, LaunchPermission={which: batch})
                 for batch in batches], workers)
        calls += len(batches)
    volume = [partial(ec2.modify_snapshot_attribute, SnapshotId=snap, Attribute="createVolumePermission",
                      OperationType=operation, UserIds=sorted(users))
              for operation, users in (("add", plan.copy_add), ("remove", plan.copy_remove)) if users
              for snap in snapshots]
    at_once(volume, workers)
    return calls + len(volume)


def converge_grants(kms: Any, key: str, class_name: str, accounts: set[str], *, dry_run: bool,
                    workers: int | None = None) -> tuple[int, int]:
    """A grant on `key` per account, named for the class; grants of accounts no longer listed are revoked
    (each call independent: at once). Returns (created, revoked)."""
    mine = [g for g in kms.list_grants(KeyId=key).get("Grants", []) if g.get("Name") == grant_name(class_name)]
    have = {g["GranteePrincipal"].split(":")[4]: g for g in mine if g["GranteePrincipal"].count(":") >= 5}
    create = sorted(accounts - set(have))
    revoke = [g for account, g in have.items() if account not in accounts]
    if not dry_run:
        at_once([*(partial(kms.create_grant, KeyId=key, GranteePrincipal=f"arn:aws:iam::{account}:root",
                           Operations=GRANT_OPERATIONS, Name=grant_name(class_name)) for account in create),
                 *(partial(kms.revoke_grant, KeyId=key, GrantId=grant["GrantId"]) for grant in revoke)], workers)
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

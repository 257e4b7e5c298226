"""What AWS enforces about shared images and moto does not, installed over moto's EC2 model in the server.

moto keeps each account's images apart and never lets one account see another's, shared or not; it accepts
any organization ARN in a launch permission and ignores the encryption asked of CopyImage. On AWS (and here,
once `install` ran):

- An account sees and launches another account's image while it is public or shared with it: by account
  id, by the ARN of the organization it belongs to, or by the ARN of an OU it is in (nested OUs too). Any
  other account gets `InvalidAMIID.NotFound`, as for an image that does not exist.
- Another account sees a shared image without the owner's tags (DescribeImages shows them, and its tag
  filters match them, for the owner only).
- Only the owner reads or changes an image's attributes (`AuthFailure` for anyone else).
- Launch permissions name 12-digit accounts, `all`, or well-formed organization / OU ARNs; anything else is
  `InvalidAMIAttributeItemValue`, and nothing is changed.
- CopyImage with `Encrypted` encrypts the copy's snapshot with `KmsKeyId`, or the region's `aws/ebs` key; the
  copy remembers its source (`copied_from`: what it holds, for `sandbox.contents`) and takes the image tags of
  its `TagSpecifications`.
- An instance of another account's encrypted image whose key that account may not use (the AWS-managed
  `aws/ebs` key always; a customer key without a grant or key-policy statement for it) is accepted, then
  terminates at once with `Client.InternalError: Client error on launch`, as on AWS.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Iterator
from typing import Any

from imagefactory.sandbox.emulator import SANDBOX_ACCOUNT_ID
from imagefactory.sandbox.org import EBS_KEY_ALIAS

ORG_ARN_RE = re.compile(r"^arn:aws(-cn|-us-gov)?:organizations::\d{12}:organization/(o-[a-z0-9]{10,32})$")
OU_ARN_RE = re.compile(r"^arn:aws(-cn|-us-gov)?:organizations::\d{12}:ou/(o-[a-z0-9]{10,32})/"
                       r"(ou-[a-z0-9]{4,32}-[a-z0-9]{8,32})$")
LAUNCH_FAILED = ("Client.InternalError", "Client.InternalError: Client error on launch")
_installed: list[bool] = []


# --------------------------------------------------------------------------------------- organizations
def _organizations() -> Iterator[Any]:
    from moto.organizations.models import organizations_backends

    for _account, partitions in list(organizations_backends.items()):
        backend = dict.get(partitions, "aws")
        if backend is not None and backend.org is not None:
            yield backend


def org_path(account: str) -> tuple[str, tuple[str, ...]] | None:
    """(organization id, OU ids from the root down) of a member account, or None outside any organization."""
    for backend in _organizations():
        member = next((a for a in backend.accounts if a.id == account), None)
        if member is None:
            continue
        parents = {ou.id: ou.parent_id for ou in backend.ou}
        chain, node = [], member.parent_id
        while node in parents and len(chain) < 10:
            chain.append(node)
            node = parents[node]
        return backend.org.id, tuple(reversed(chain))
    return None


def may_launch(ami: Any, account: str) -> bool:
    """Whether `account` may see and launch `ami` (its owner always may)."""
    if ami.owner_id == account:
        return True
    where = None
    for lp in ami.launch_permissions:
        if lp.get("Group") == "all" or lp.get("UserId") == account:
            return True
        arn = lp.get("OrganizationArn") or lp.get("OrganizationalUnitArn")
        if arn:
            where = where or org_path(account) or ("", ())
            org_match, ou_match = ORG_ARN_RE.match(arn), OU_ARN_RE.match(arn)
            if org_match and org_match.group(2) == where[0]:
                return True
            if ou_match and ou_match.group(2) == where[0] and ou_match.group(3) in where[1]:
                return True
    return False


# ------------------------------------------------------------------------------------------------ keys
def _kms_key(owner: str, region: str, key_ref: str | None) -> Any:
    from moto.kms.models import kms_backends

    backend = kms_backends[owner][region]
    ref = key_ref or EBS_KEY_ALIAS
    if ref.startswith("arn:") and ":alias/" in ref:
        ref = "alias/" + ref.split(":alias/", 1)[1]
    try:
        return backend.describe_key(ref)
    except Exception:  # an unknown key: no one can use it
        return None


def _principals(statement: dict[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    if principal == "*":
        return ["*"]
    found = principal.get("AWS", []) if isinstance(principal, dict) else []
    return [found] if isinstance(found, str) else list(found)


def _conditions_hold(statement: dict[str, Any], account: str) -> bool:
    where = org_path(account)
    for values in (statement.get("Condition") or {}).values():
        for name, wanted in values.items():
            wanted = [wanted] if isinstance(wanted, str) else list(wanted)
            if name == "aws:PrincipalOrgID" and (where is None or where[0] not in wanted):
                return False
            if name == "aws:PrincipalOrgPaths":
                if where is None:
                    return False
                paths = [f"{where[0]}/{'/'.join(where[1][:i])}/".replace("//", "/") for i in
                         range(len(where[1]) + 1)]
                if not any(fnmatch.fnmatchcase(p, w) for p in paths for w in wanted):
                    return False
    return True


def key_usable(key: Any, account: str) -> bool:
    """Whether `account` may decrypt with `key`: its own; never an AWS-managed key of another account; a
    customer key through a grant to the account, or a key-policy statement allowing it."""
    if key is None:
        return False
    if key.account_id == account:
        return True
    if key.key_manager == "AWS":
        return False
    if any(f":{account}:" in g.grantee_principal or g.grantee_principal == account for g in key.grants.values()):
        return True
    try:
        statements = json.loads(key.policy).get("Statement", [])
    except (TypeError, ValueError):
        return False
    for st in statements if isinstance(statements, list) else [statements]:
        actions = st.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if st.get("Effect") != "Allow" or not any(a in ("kms:*", "kms:Decrypt", "kms:CreateGrant") for a in actions):
            continue
        who = _principals(st)
        if ("*" in who or f"arn:aws:iam::{account}:root" in who or account in who) and _conditions_hold(st, account):
            return True
    return False


# ------------------------------------------------------------------------------------- the moto patches
def _foreign_images(backend: Any) -> list[Any]:
    """Images of other accounts in this region that this backend's account may see."""
    from moto.ec2.models import ec2_backends

    found = []
    for account, regions in list(ec2_backends.items()):
        other = dict.get(regions, backend.region_name)
        if account == backend.account_id or other is None:
            continue
        found += [ami for ami in list(other.amis.values()) if may_launch(ami, backend.account_id)]
    return found


class SharedView:
    """An image as another account sees it: everything but the owner's tags (as on AWS)."""

    def __init__(self, ami: Any) -> None:
        self.__dict__["ami"] = ami

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ami, name)

    def get_tags(self) -> list[dict[str, str]]:
        return []

    @property
    def tag_set(self) -> list[dict[str, str]]:
        return []

    tag_list = tag_set

    def get_filter_value(self, filter_name: str, method_name: str | None = None) -> Any:
        if filter_name.startswith("tag:"):
            return None
        if filter_name in ("tag-key", "tag-value"):
            return []
        return self.ami.get_filter_value(filter_name, method_name)


def _describe_images(self: Any, ami_ids: list[str] | None = None, filters: dict[str, Any] | None = None,
                     exec_users: list[str] | None = None, owners: list[str] | None = None) -> list[Any]:
    from moto.ec2.exceptions import InvalidAMIIdError, MalformedAMIIdError
    from moto.ec2.utils import generic_filter

    images = [*self.amis.copy().values(), *map(SharedView, _foreign_images(self))]
    if ami_ids:
        malformed = [i for i in ami_ids if not i.startswith("ami-")]
        if malformed:
            raise MalformedAMIIdError(malformed)
        images = [ami for ami in images if ami.id in ami_ids]
        if not images and not any(i in self.deleted_amis for i in ami_ids):
            raise InvalidAMIIdError(ami_ids)
        return images
    if exec_users:
        users = {self.account_id if u == "self" else u for u in exec_users}
        images = [ami for ami in images if ami.is_public or any(ami.owner_id != u and may_launch(ami, u)
                                                                for u in users)]
    if owners:
        wanted = {self.account_id if o == "self" else o for o in owners}
        images = [ami for ami in images if ami.owner_id in wanted or ami.owner_alias in wanted]
    return generic_filter(filters, images) if filters else images


def _own_image(self: Any, ami_id: str) -> None:
    from moto.ec2.exceptions import EC2ClientError, InvalidAMIIdError

    if ami_id in self.amis:
        return
    if any(ami.id == ami_id for ami in _foreign_images(self)):
        raise EC2ClientError("AuthFailure", f"Not authorized for image:{ami_id}")
    raise InvalidAMIIdError(ami_id)


def _validate_permission_targets(original: Any) -> Any:
    def validate(self: Any, permissions: list[dict[str, str]]) -> None:
        from moto.ec2.exceptions import InvalidAMIAttributeItemValueError

        original(self, permissions)
        for perm in permissions:
            if "OrganizationArn" in perm and not ORG_ARN_RE.match(perm["OrganizationArn"]):
                raise InvalidAMIAttributeItemValueError("organizationArn", perm["OrganizationArn"])
            if "OrganizationalUnitArn" in perm and not OU_ARN_RE.match(perm["OrganizationalUnitArn"]):
                raise InvalidAMIAttributeItemValueError("organizationalUnitArn", perm["OrganizationalUnitArn"])

    return validate


def _owner_only(original: Any) -> Any:
    def call(self: Any, ami_id: str, *args: Any, **kwargs: Any) -> Any:
        _own_image(self, ami_id)
        return original(self, ami_id, *args, **kwargs)

    return call


def _run_instances(original: Any) -> Any:
    def run(self: Any, image_id: str, *args: Any, **kwargs: Any) -> Any:
        from moto.ec2.models.instances import StateReason

        reservation = original(self, image_id, *args, **kwargs)
        ami = next((a for a in _foreign_images(self) if a.id == image_id), None)
        snapshot = ami.ebs_snapshot if ami is not None and image_id not in self.amis else None
        if snapshot is not None and snapshot.encrypted:
            key = _kms_key(ami.owner_id, self.region_name, snapshot.kms_key_id)
            if not key_usable(key, self.account_id):
                for instance in reservation.instances:
                    instance._state.name, instance._state.code = "terminated", 48
                    instance.state_reason = StateReason(LAUNCH_FAILED[1], LAUNCH_FAILED[0])
                    instance._reason = LAUNCH_FAILED[1]
        return reservation

    return run


def _run_request(original: Any) -> Any:
    """RunInstances as a request: as on AWS, an image the caller may not see is one that does not exist
    (checked here, not in the model, so that instances restored from state.json are never refused)."""

    def run(self: Any) -> Any:
        image_id = self._get_param("ImageId")
        if image_id:
            self.ec2_backend.describe_images(ami_ids=[image_id])
        return original(self)

    return run


def _copy_image(original: Any) -> Any:
    def copy(self: Any) -> Any:
        result = original(self)
        image = self.ec2_backend.amis[result.result["ImageId"]]
        from moto.ec2.models import ec2_backends

        source_backend = ec2_backends[self.ec2_backend.account_id][self._get_param("SourceRegion")]
        source = source_backend.describe_images(ami_ids=[self._get_param("SourceImageId")])
        image.copied_from = {"region": self._get_param("SourceRegion"), "image": self._get_param("SourceImageId")}
        for spec in self._get_param("TagSpecifications", []) or []:  # moto drops CopyImage's TagSpecifications
            if spec.get("ResourceType") == "image" and spec.get("Tags"):
                self.ec2_backend.create_tags([image.id], {t["Key"]: t["Value"] for t in spec["Tags"]})
        encrypted = str(self._get_param("Encrypted", "false")).lower() == "true"
        source_snapshot = source[0].ebs_snapshot if source else None
        if encrypted or (source_snapshot is not None and source_snapshot.encrypted):
            key = _kms_key(self.ec2_backend.account_id, self.ec2_backend.region_name, self._get_param("KmsKeyId"))
            image.ebs_snapshot.encrypted = True
            image.ebs_snapshot.kms_key_id = key.arn if key is not None else self._get_param("KmsKeyId")
        return result

    return copy


def _ebs_backed(original: Any) -> Any:
    """CreateImage of an EBS-backed instance and CopyImage of an EBS-backed AMI give EBS-backed AMIs (moto
    says "standard", which Packer refuses as the source of a build: an incremental build starts from one)."""
    def make(self: Any, *args: Any, **kwargs: Any) -> Any:
        ami = original(self, *args, **kwargs)
        ami.root_device_type, ami.root_device_name = "ebs", "/dev/sda1"
        return ami

    return make


def _block_device_mappings(self: Any) -> list[dict[str, Any]]:
    snapshot = self.ebs_snapshot
    ebs = {"SnapshotId": snapshot.id, "VolumeSize": 15, "DeleteOnTermination": False, "VolumeType": "standard",
           "Encrypted": bool(snapshot.encrypted)}
    if snapshot.encrypted and snapshot.kms_key_id:
        ebs["KmsKeyId"] = snapshot.kms_key_id
    return [{"DeviceName": self.root_device_name, "Ebs": ebs}]


def install() -> None:
    """Put the rules above into moto's EC2 model (once per process; the server calls it before serving)."""
    if _installed:
        return
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.ec2.models.amis import Ami, AmiBackend
    from moto.ec2.models.instances import InstanceBackend
    from moto.ec2.responses.amis import AmisResponse
    from moto.ec2.responses.instances import InstanceResponse

    AmiBackend.describe_images = _describe_images  # type: ignore[method-assign]
    AmiBackend.validate_permission_targets = _validate_permission_targets(  # type: ignore[method-assign]
        AmiBackend.validate_permission_targets)
    AmiBackend.modify_image_attribute = _owner_only(AmiBackend.modify_image_attribute)  # type: ignore[method-assign]
    AmiBackend.describe_image_attribute = _owner_only(  # type: ignore[method-assign]
        AmiBackend.describe_image_attribute)
    InstanceBackend.run_instances = _run_instances(InstanceBackend.run_instances)  # type: ignore[method-assign]
    AmiBackend.create_image = _ebs_backed(AmiBackend.create_image)  # type: ignore[method-assign]
    AmiBackend.copy_image = _ebs_backed(AmiBackend.copy_image)  # type: ignore[method-assign]
    AmisResponse.copy_image = _copy_image(AmisResponse.copy_image)  # type: ignore[method-assign]
    InstanceResponse.run_instances = _run_request(InstanceResponse.run_instances)  # type: ignore[method-assign]
    Ami.block_device_mappings = property(_block_device_mappings)  # type: ignore[method-assign,assignment]
    # Requests are answered in the account of their access key (a student's, after AssumeRole); moto's
    # default account, for the sandbox's own dummy keys, is the sandbox account.
    assert DEFAULT_ACCOUNT_ID == SANDBOX_ACCOUNT_ID, "moto's default account is not the sandbox account"
    os.environ.pop("MOTO_ACCOUNT_ID", None)
    _installed.append(True)

"""An AMI's life after its bake, as AWS documents it and moto lacks it, installed over moto's EC2 model in the
server (after `policy.install`), and persisted with the rest of the state (`dump` / `restore`).

- **Deprecation.** `EnableImageDeprecation` (owner only) sets the AMI's `DeprecationTime`: its seconds rounded
  to the nearest minute, not in the past (a minute of slack for that rounding), at most 10 years ahead;
  `DisableImageDeprecation` clears it. `DescribeImages` reports `DeprecationTime`. Once it has passed, the AMI
  leaves other accounts' listings unless they ask by ID or with `IncludeDeprecated`; its owner still lists
  it, and it still launches by ID.
- **Disabling.** `DisableImage` (owner only) sets the state `disabled` and removes every launch permission; a
  disabled AMI is in no `DescribeImages` answer without `IncludeDisabled` and cannot be launched
  (`InvalidAMIID.Unavailable`). `EnableImage` makes it available again, its permissions not restored.
- **Deregistration.** `DeregisterImage` with `DeleteAssociatedSnapshots` deletes the AMI's snapshot too and
  reports it in `DeleteSnapshotResults`. Otherwise the snapshot stays, and is kept across restarts
  until `DeleteSnapshot`; a snapshot in use by a registered AMI cannot be deleted (`InvalidSnapshot.InUse`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from imagefactory.timestamps import parse as parse_time

ACTIONS = frozenset({"EnableImageDeprecation", "DisableImageDeprecation", "DisableImage", "EnableImage"})
SLACK = timedelta(seconds=60)
LONGEST = timedelta(days=3652)
_installed: list[bool] = []


def now() -> datetime:
    return datetime.now(UTC)


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def is_deprecated(ami: Any, at: datetime) -> bool:
    when = getattr(ami, "deprecation_time", None)
    return when is not None and parse_time(when) <= at


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _own(backend: Any, ami_id: str) -> Any:
    """The caller's own AMI `ami_id`; AuthFailure for one it only sees, NotFound otherwise (as on AWS)."""
    from moto.ec2.exceptions import EC2ClientError, InvalidAMIIdError

    if ami_id in backend.amis:
        return backend.amis[ami_id]
    try:
        seen = backend.describe_images(ami_ids=[ami_id])
    except EC2ClientError:
        seen = []
    if seen:
        raise EC2ClientError("AuthFailure", f"Not authorized for image:{ami_id}")
    raise InvalidAMIIdError(ami_id)


# --------------------------------------------------------------------------------------------- requests
def enable_image_deprecation(self: Any) -> Any:
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError

    ami_id, asked = self._get_param("ImageId"), self._get_param("DeprecateAt")
    self.error_on_dryrun()
    ami = _own(self.ec2_backend, ami_id)
    try:
        when = asked if isinstance(asked, datetime) else parse_time(asked)
    except (TypeError, ValueError):
        raise EC2ClientError("InvalidParameterValue", f"DeprecateAt {asked!r} is not a timestamp") from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    rounded = (when + timedelta(seconds=30)).replace(second=0, microsecond=0)
    current = now()
    if rounded < current - SLACK:
        raise EC2ClientError("InvalidParameterValue", f"DeprecateAt {_stamp(rounded)} is in the past")
    if rounded > current + LONGEST:
        raise EC2ClientError("InvalidParameterValue", f"DeprecateAt {_stamp(rounded)} is more than 10 years ahead")
    ami.deprecation_time = _stamp(rounded)
    return ActionResult({"Return": True})


def disable_image_deprecation(self: Any) -> Any:
    from moto.core.responses import ActionResult

    ami_id = self._get_param("ImageId")
    self.error_on_dryrun()
    _own(self.ec2_backend, ami_id).deprecation_time = None
    return ActionResult({"Return": True})


def _describe_images(self: Any) -> Any:
    from moto.core.responses import ActionResult

    self.error_on_dryrun()
    ami_ids = self._get_param("ImageIds", [])
    images = self.ec2_backend.describe_images(ami_ids=ami_ids, filters=self._filters_from_querystring(),
                                              exec_users=self._get_param("ExecutableUsers", []),
                                              owners=self._get_param("Owners", []))
    deprecated_too = bool(ami_ids) or _truthy(self._get_param("IncludeDeprecated", False))
    disabled_too = _truthy(self._get_param("IncludeDisabled", False))
    caller, at = self.ec2_backend.account_id, now()
    shown = [ami for ami in images
             if (disabled_too or ami.state != "disabled")
             and (deprecated_too or ami.owner_id == caller or not is_deprecated(ami, at))]
    return ActionResult({"Images": shown})


def _deregister_image(original: Any) -> Any:
    def deregister(self: Any) -> Any:
        from moto.core.responses import ActionResult

        ami_id = self._get_param("ImageId")
        ami = self.ec2_backend.amis.get(ami_id)
        result = original(self)
        if ami is None or not _truthy(self._get_param("DeleteAssociatedSnapshots", False)):
            return result
        snapshot = ami.ebs_snapshot
        self.ec2_backend.delete_snapshot(snapshot.id)
        return ActionResult({"Return": True, "DeleteSnapshotResults": [{"SnapshotId": snapshot.id,
                                                                         "ReturnCode": "success"}]})

    return deregister


def _disable_image(original: Any) -> Any:
    def disable(self: Any, ami_id: str) -> None:
        if ami_id not in self.deleted_amis:
            _own(self, ami_id)
        original(self, ami_id)
        self.amis[ami_id].launch_permissions = []

    return disable


def _enable_image(original: Any) -> Any:
    def enable(self: Any, ami_id: str) -> None:
        if ami_id not in self.deleted_amis:
            _own(self, ami_id)
        original(self, ami_id)

    return enable


def _run_request(original: Any) -> Any:
    def run(self: Any) -> Any:
        from moto.ec2.exceptions import UnvailableAMIIdError

        image_id = self._get_param("ImageId")
        found = self.ec2_backend.describe_images(ami_ids=[image_id]) if image_id else []
        if any(ami.state == "disabled" for ami in found):
            raise UnvailableAMIIdError(image_id)
        return original(self)

    return run


def install() -> None:
    """Put the rules above into moto's EC2 model (once per process; after `policy.install`)."""
    if _installed:
        return
    from moto.ec2.models.amis import Ami, AmiBackend
    from moto.ec2.responses.amis import AmisResponse
    from moto.ec2.responses.instances import InstanceResponse

    Ami.deprecation_time = None  # type: ignore[attr-defined]
    AmisResponse.enable_image_deprecation = enable_image_deprecation  # type: ignore[attr-defined]
    AmisResponse.disable_image_deprecation = disable_image_deprecation  # type: ignore[attr-defined]
    AmisResponse.describe_images = _describe_images  # type: ignore[method-assign,assignment]
    AmisResponse.deregister_image = _deregister_image(AmisResponse.deregister_image)  # type: ignore[method-assign]
    AmiBackend.disable_image = _disable_image(AmiBackend.disable_image)  # type: ignore[method-assign]
    AmiBackend.enable_image = _enable_image(AmiBackend.enable_image)  # type: ignore[method-assign]
    InstanceResponse.run_instances = _run_request(InstanceResponse.run_instances)  # type: ignore[method-assign]
    _installed.append(True)


# ------------------------------------------------------------------------------------------ persistence
def _left_snapshots(backend: Any) -> list[Any]:
    """Snapshots of deregistered AMIs (state.py saves an AMI's snapshot with the AMI)."""
    return [s for s in list(backend.snapshots.values()) if s.from_ami and s.from_ami not in backend.amis]


def dump(account_id: str) -> dict[str, Any]:
    """Deprecation times and the snapshots deregistered AMIs left, per region (for state.json)."""
    from moto.ec2.models import ec2_backends

    out: dict[str, Any] = {}
    for region, backend in list(ec2_backends[account_id].items()):
        deprecations = {ami_id: ami.deprecation_time for ami_id, ami in list(backend.amis.items())
                        if getattr(ami, "deprecation_time", None)}
        snapshots = [{"id": s.id, "size": s.volume.size, "description": s.description, "from_ami": s.from_ami,
                      "owner_id": s.owner_id, "encrypted": s.encrypted, "kms_key_id": s.kms_key_id,
                      "tags": dict(backend.tags.get(s.id, {}))} for s in _left_snapshots(backend)]
        if deprecations or snapshots:
            out[region] = {"deprecations": deprecations, "snapshots": snapshots}
    return {"image_lifecycle": out} if out else {}


def restore(account_id: str, state: dict[str, Any]) -> None:
    """Put back what `dump` saved (after state.py restored the images, with their IDs)."""
    from moto.ec2.models import ec2_backends

    regions = ec2_backends[account_id]
    for region, data in (state.get("image_lifecycle") or {}).items():
        if region not in regions.regions:
            continue
        backend = regions[region]
        for ami_id, when in data.get("deprecations", {}).items():
            if ami_id in backend.amis:
                backend.amis[ami_id].deprecation_time = when
        for saved in data.get("snapshots", []):
            if saved["id"] in backend.snapshots:
                continue
            volume = backend.create_volume(size=saved["size"], zone_name=f"{region}a")
            snapshot = backend.create_snapshot(volume.id, saved["description"], saved["owner_id"], saved["from_ami"])
            backend.delete_volume(volume.id)
            backend.snapshots.pop(snapshot.id)
            snapshot.id = saved["id"]
            snapshot.encrypted, snapshot.kms_key_id = saved["encrypted"], saved["kms_key_id"]
            backend.snapshots[snapshot.id] = snapshot
            if saved["tags"]:
                backend.create_tags([snapshot.id], saved["tags"])

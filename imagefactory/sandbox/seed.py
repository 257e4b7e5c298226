"""What the emulator's backends hold: Canonical's Ubuntu images, and the sandbox state kept across restarts.

Runs inside the server process only (it imports moto). Two halves, each a pair of pure-ish mappings
between moto's in-memory models and plain data:

- `seed_canonical` puts Canonical-owned Ubuntu LTS images (`ubuntu_images.json`) into every EC2 region
  backend, with IDs derived from a hash of region + name, so the same base AMI has the same ID on every
  start and catalog entries that record it stay valid.
- `dump_state` / `restore_state` turn what users made (AMIs with their root snapshot, tags and launch
  permissions; deregistrations; key pairs; security groups and instances, see `machines_state`; SSM
  parameters) into JSON-ready data and back, keeping IDs.

Models are built with moto's own classes (`Ami`, `KeyPair`, `Parameter`) and then given their saved IDs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami
from moto.ec2.models.key_pairs import KeyPair
from moto.ssm.models import Parameter, ssm_backends

from imagefactory.sandbox import machines_state

log = logging.getLogger(__name__)

CANONICAL_OWNER_ID = "099720109477"
STATE_VERSION = 1
_IMAGES_FILE = Path(__file__).with_name("ubuntu_images.json")

# Fields copied one-to-one between a moto `Ami` and its saved form.
_AMI_FIELDS = (
    "name", "description", "state", "owner_id", "owner_alias", "architecture", "virtualization_type",
    "platform", "kernel_id", "image_type", "image_location", "hypervisor", "root_device_type",
    "root_device_name", "sriov", "boot_mode", "instance_id",
)  # fmt: skip
# Keyword arguments of `Ami.__init__` among those fields (the rest are set after construction).
_AMI_INIT_FIELDS = (
    "name", "description", "state", "owner_id", "owner_alias", "architecture", "virtualization_type",
    "platform", "image_type", "image_location", "hypervisor", "root_device_type", "root_device_name",
    "sriov", "boot_mode",
)  # fmt: skip
_PARAMETER_FIELDS = (
    "name", "value", "parameter_type", "description", "allowed_pattern", "keyid", "version", "data_type",
    "labels", "tier", "policies",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------- seeding
@dataclass(frozen=True)
class UbuntuImage:
    """One Canonical Ubuntu server image as published on AWS (the same in every region)."""

    name: str
    description: str
    architecture: str
    creation_date: datetime
    boot_mode: str


def _build_date(serial: str) -> datetime:
    """`20240207.1` -> 2024-02-07 12:00 + 1 h: respins sort after the first build of the same day."""
    day, _, respin = serial.partition(".")
    return datetime.strptime(day, "%Y%m%d").replace(hour=12 + int(respin or 0))


@cache
def ubuntu_images() -> tuple[UbuntuImage, ...]:
    """Every image named by `ubuntu_images.json`: each release x serial x architecture."""
    data = json.loads(_IMAGES_FILE.read_text(encoding="utf-8"))
    images = []
    for release in data["releases"]:
        for serial in release["serials"]:
            built = _build_date(serial)
            for arch, aws_arch in data["architectures"].items():
                series, version = release["series"], release["version"]
                images.append(
                    UbuntuImage(
                        name=f"ubuntu/images/{release['family']}/ubuntu-{series}-{version}-{arch}-server-{serial}",
                        description=f"Canonical, Ubuntu, {version} LTS, {arch} {series} image build on "
                        f"{built:%Y-%m-%d}",
                        architecture=aws_arch,
                        creation_date=built,
                        boot_mode="uefi" if arch == "arm64" else "uefi-preferred",
                    )
                )
    return tuple(images)


def _hashed_id(prefix: str, *parts: str) -> str:
    return f"{prefix}-{hashlib.sha256(':'.join(parts).encode()).hexdigest()[:17]}"


def image_id(region: str, name: str) -> str:
    """The seeded image's ID: the same for the same region and name on every start."""
    return _hashed_id("ami", region, name)


def _rekey_snapshot(backend: Any, ami: Ami, snapshot_id: str) -> None:
    """Give the root snapshot moto made for `ami` a chosen ID instead of a random one."""
    snapshot = backend.snapshots.pop(ami.ebs_snapshot.id)
    snapshot.id = snapshot_id
    backend.snapshots[snapshot_id] = snapshot


def _seed_region(backend: Any, region: str) -> set[str]:
    seeded = set()
    for image in ubuntu_images():
        ami_id = image_id(region, image.name)
        ami = Ami(
            backend,
            ami_id,
            name=image.name,
            description=image.description,
            owner_id=CANONICAL_OWNER_ID,
            public=True,
            virtualization_type="hvm",
            architecture=image.architecture,
            creation_date=image.creation_date,
            image_location=f"{CANONICAL_OWNER_ID}/{image.name}",
            hypervisor="xen",
            root_device_type="ebs",
            root_device_name="/dev/sda1",
            region_name=f"{region}a",
            snapshot_description=image.name,
            boot_mode=image.boot_mode,
        )
        _rekey_snapshot(backend, ami, _hashed_id("snap", region, image.name))
        backend.amis[ami_id] = ami
        seeded.add(ami_id)
    return seeded


def seed_canonical(account_id: str) -> dict[str, set[str]]:
    """Seed every EC2 region backend of `account_id`; returns the seeded image IDs per region."""
    account = ec2_backends[account_id]
    return {region: _seed_region(account[region], region) for region in account.regions}


# ------------------------------------------------------------------------------------------ persistence
def _time(value: datetime) -> str:
    return value.isoformat()


def _tags(backend: Any, resource_id: str) -> dict[str, str]:
    return dict(backend.tags.get(resource_id, {}))


def _dump_snapshot(backend: Any, ami: Ami) -> dict[str, Any]:
    snapshot = ami.ebs_snapshot
    return {
        "id": snapshot.id,
        "description": snapshot.description,
        "encrypted": snapshot.encrypted,
        "kms_key_id": snapshot.kms_key_id,
        "create_volume_user_ids": sorted(snapshot.create_volume_permission_userids),
        "create_volume_groups": sorted(snapshot.create_volume_permission_groups),
        "tags": _tags(backend, snapshot.id),
    }


def _dump_image(backend: Any, ami: Ami) -> dict[str, Any]:
    data: dict[str, Any] = {"id": ami.id, **{field: getattr(ami, field) for field in _AMI_FIELDS}}
    data["creation_date"] = _time(ami.creation_date)
    data["product_codes"] = sorted(ami.product_codes)
    data["launch_permissions"] = [dict(lp) for lp in ami.launch_permissions]
    data["tags"] = _tags(backend, ami.id)
    data["snapshot"] = _dump_snapshot(backend, ami)
    return data


def _dump_key_pair(backend: Any, key: KeyPair) -> dict[str, Any]:
    # The private key of a CreateKeyPair key is returned once, as on AWS; it is never written to disk.
    return {
        "id": key.id,
        "name": key.key_name,
        "type": key.key_type,
        "fingerprint": key.key_fingerprint,
        "public_key": key.material_public.decode("utf-8"),
        "create_time": _time(key.create_time),
        "tags": _tags(backend, key.id),
    }


def _dump_ec2_region(backend: Any, seeded: set[str]) -> dict[str, Any]:
    images = [ami for ami_id, ami in list(backend.amis.items()) if ami_id not in seeded]
    return {
        "images": [_dump_image(backend, ami) for ami in images],
        "deregistered": list(backend.deleted_amis),
        "key_pairs": [_dump_key_pair(backend, key) for key in list(backend.key_pairs.values())],
        "security_groups": machines_state.dump_groups(backend),
        "instances": machines_state.dump_instances(backend),
    }


def _dump_parameter(backend: Any, name: str, versions: list[Parameter]) -> dict[str, Any]:
    return {
        "name": name,
        "versions": [
            {
                **{field: getattr(p, field) for field in _PARAMETER_FIELDS},
                "modified": _time(p.last_modified_date),
            }
            for p in versions
        ],
        "tags": dict(backend._resource_tags.get("Parameter", {}).get(name, {})),
    }


def _dump_ssm_region(backend: Any) -> list[dict[str, Any]]:
    return [
        _dump_parameter(backend, name, list(versions))
        for name, versions in list(backend._parameters.items())
        if versions and not name.startswith("/aws/")
    ]


def _nonempty(data: dict[str, Any]) -> bool:
    return any(data.values())


def dump_state(account_id: str, seeded: dict[str, set[str]]) -> dict[str, Any]:
    """Everything users made in the sandbox, as JSON-ready data (seeded images excluded)."""
    ec2 = {
        region: _dump_ec2_region(backend, seeded.get(region, set()))
        for region, backend in list(ec2_backends[account_id].items())
    }
    ssm = {region: _dump_ssm_region(backend) for region, backend in list(ssm_backends[account_id].items())}
    return {
        "version": STATE_VERSION,
        "account_id": account_id,
        "ec2": {region: data for region, data in ec2.items() if _nonempty(data)},
        "ssm": {region: params for region, params in ssm.items() if params},
    }


def _restore_snapshot(backend: Any, ami: Ami, data: dict[str, Any]) -> None:
    _rekey_snapshot(backend, ami, data["id"])
    snapshot = ami.ebs_snapshot
    snapshot.description = data["description"]
    snapshot.encrypted = data["encrypted"]
    snapshot.kms_key_id = data["kms_key_id"]
    snapshot.create_volume_permission_userids = set(data["create_volume_user_ids"])
    snapshot.create_volume_permission_groups = set(data["create_volume_groups"])
    if data["tags"]:
        backend.create_tags([snapshot.id], data["tags"])


def _restore_image(backend: Any, region: str, data: dict[str, Any]) -> None:
    ami = Ami(
        backend,
        data["id"],
        **{field: data[field] for field in _AMI_INIT_FIELDS},
        creation_date=datetime.fromisoformat(data["creation_date"]),
        product_codes=set(data["product_codes"]),
        region_name=f"{region}a",
    )
    ami.kernel_id = data["kernel_id"]
    ami.instance_id = data["instance_id"]
    ami.launch_permissions = [dict(lp) for lp in data["launch_permissions"]]
    _restore_snapshot(backend, ami, data["snapshot"])
    if data["tags"]:
        backend.create_tags([ami.id], data["tags"])
    backend.amis[ami.id] = ami


def _restore_key_pair(backend: Any, data: dict[str, Any]) -> None:
    key = KeyPair(
        data["name"],
        data["type"],
        fingerprint=data["fingerprint"],
        material=b"",
        material_public=data["public_key"].encode("utf-8"),
        tags={},
        ec2_backend=backend,
    )
    key.id = data["id"]
    key.create_time = datetime.fromisoformat(data["create_time"])
    if data["tags"]:
        backend.create_tags([key.id], data["tags"])
    backend.key_pairs[key.key_name] = key


def _restore_ec2_region(backend: Any, region: str, data: dict[str, Any]) -> None:
    for image in data["images"]:
        _restore_image(backend, region, image)
    for ami_id in data["deregistered"]:
        backend.amis.pop(ami_id, None)  # a deregistered seeded image stays gone
        if ami_id not in backend.deleted_amis:
            backend.deleted_amis.append(ami_id)
    for key in data["key_pairs"]:
        _restore_key_pair(backend, key)
    machines_state.restore_groups(backend, data.get("security_groups", []))
    machines_state.restore_instances(backend, region, data.get("instances", []))


def _restore_parameter(backend: Any, account_id: str, data: dict[str, Any]) -> None:
    versions = backend._parameters[data["name"]]
    for saved in data["versions"]:
        fields = {field: saved[field] for field in _PARAMETER_FIELDS}
        parameter = Parameter(
            account_id=account_id,
            last_modified_date=datetime.fromisoformat(saved["modified"]),
            **fields,
        )
        parameter.value = saved["value"]  # as stored: a SecureString is not encrypted twice
        versions.append(parameter)
    if data["tags"]:
        backend._resource_tags["Parameter"][data["name"]].update(data["tags"])


def restore_state(account_id: str, state: dict[str, Any]) -> None:
    """Put back what `dump_state` saved, with the same IDs. Regions moto no longer serves are skipped."""
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"unknown sandbox state version {state.get('version')!r}")
    ec2, ssm = ec2_backends[account_id], ssm_backends[account_id]
    for region, data in state.get("ec2", {}).items():
        if region not in ec2.regions:
            log.warning("state.json names region %s, which this moto does not serve; skipped", region)
            continue
        _restore_ec2_region(ec2[region], region, data)
    for region, params in state.get("ssm", {}).items():
        if region in ssm.regions:
            for param in params:
                _restore_parameter(ssm[region], account_id, param)

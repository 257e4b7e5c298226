"""The sandbox state kept across emulator restarts: what users made, as JSON-ready data and back.

Runs inside the server process only (it imports moto). `dump_state` / `restore_state` turn AMIs (with
their root snapshot, tags and launch permissions), deregistrations, key pairs, security groups and
instances (`machines_state`) and SSM parameters into plain data and back, keeping IDs; the EC2 resources
of the other accounts (students' instances, key pairs and security groups) too, under `accounts`. Models are built
with moto's own classes (`Ami`, `KeyPair`, `Parameter`) and then given their saved IDs.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami
from moto.ec2.models.key_pairs import KeyPair
from moto.ssm.models import Parameter, ssm_backends

from imagefactory.sandbox import image_lifecycle, machines_state, org
from imagefactory.sandbox.seed import rekey_snapshot

log = logging.getLogger(__name__)

STATE_VERSION = 1

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
    if getattr(ami, "copied_from", None):
        data["copied_from"] = dict(ami.copied_from)
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
    others = _other_accounts(account_id)
    return {
        "version": STATE_VERSION,
        "account_id": account_id,
        "ec2": {region: data for region, data in ec2.items() if _nonempty(data)},
        "ssm": {region: params for region, params in ssm.items() if params},
        **org.dump(account_id),
        **image_lifecycle.dump(account_id),
        **({"accounts": others} if others else {}),
    }


def _other_accounts(account_id: str) -> dict[str, Any]:
    """What other accounts (students, by AssumeRole) made in EC2: their key pairs, security groups, instances
    (and images), per account and region. Only the regions they used are read (none is made here)."""
    found: dict[str, Any] = {}
    for other, regions in list(ec2_backends.items()):
        if other == account_id:
            continue
        used = {region: _dump_ec2_region(backend, set()) for region, backend in list(dict.items(regions))}
        used = {region: data for region, data in used.items() if _nonempty(data)}
        if used:
            found[other] = used
    return found


def _restore_snapshot(backend: Any, ami: Ami, data: dict[str, Any]) -> None:
    rekey_snapshot(backend, ami, data["id"])
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
    if data.get("copied_from"):
        ami.copied_from = dict(data["copied_from"])
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
    org.restore(account_id, state)
    image_lifecycle.restore(account_id, state)
    for other, regions in (state.get("accounts") or {}).items():
        for region, data in regions.items():
            if region in ec2_backends[other].regions:
                _restore_ec2_region(ec2_backends[other][region], region, data)

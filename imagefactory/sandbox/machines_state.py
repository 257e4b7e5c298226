"""Instances and security groups kept across emulator restarts (part of `state.dump_state`/`restore_state`).

A sandbox instance is a running container on this machine with a disk under `.sandbox/instances/`; the
emulator must not forget it on a restart, or no command could reach it again. What is saved per
region: each non-default security group (id, name, description, tags, ingress rules) and each
instance that is not terminated (id, AMI, type, key, groups, user data, metadata options, block
devices, spot, zone, state, launch time, tags). They are rebuilt with moto's own backend calls, with
moto's ID generator pointed at the saved ID for the one call, so every reference (volumes, tags) uses it.

Runs inside the server process only (it imports moto).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import moto.ec2.models.instances as moto_instances
import moto.ec2.models.security_groups as moto_groups
from moto.core.types import Base64EncodedString


@contextmanager
def _next_id(module: Any, generator: str, value: str) -> Iterator[None]:
    original = getattr(module, generator)
    setattr(module, generator, lambda *args, **kwargs: value)
    try:
        yield
    finally:
        setattr(module, generator, original)


def _tags(backend: Any, resource_id: str) -> dict[str, str]:
    return dict(backend.tags.get(resource_id, {}))


def _all_groups(backend: Any) -> list[Any]:
    return [g for by_id in list(backend.groups.values()) for g in list(by_id.values())]


def dump_groups(backend: Any) -> list[dict[str, Any]]:
    return [{"id": g.id, "name": g.name, "description": g.description, "tags": _tags(backend, g.id),
             "ingress": [{"protocol": r.ip_protocol, "from": r.from_port, "to": r.to_port, "range": r.ip_range}
                         for r in g.ingress_rules if r.ip_range]}
            for g in _all_groups(backend) if g.name != "default"]


def dump_instances(backend: Any) -> list[dict[str, Any]]:
    saved = []
    for reservation in list(backend.reservations.values()):
        for inst in reservation.instances:
            if inst.state == "terminated":
                continue
            devices = []
            for name, device in inst.block_device_mapping.items():
                volume = backend.get_volume(device.volume_id)
                devices.append({"DeviceName": name, "Ebs": {
                    "VolumeSize": volume.size, "VolumeType": volume.volume_type, "Encrypted": bool(volume.encrypted),
                    "DeleteOnTermination": bool(device.delete_on_termination)}})
            options = inst.metadata_options
            saved.append({
                "id": inst.id, "image_id": inst.image_id, "instance_type": inst.instance_type,
                "key_name": inst.key_name, "groups": [g.id for g in inst.security_groups],
                "user_data": str(inst.user_data) if inst.user_data else None, "zone": inst.placement.zone,
                "shutdown_behavior": inst.instance_initiated_shutdown_behavior, "spot": inst.lifecycle == "spot",
                "metadata": {"HttpTokens": options.http_tokens, "HttpEndpoint": options.http_endpoint,
                             "HttpPutResponseHopLimit": options.http_put_response_hop_limit},
                "devices": devices, "state": inst.state, "launch_time": inst.launch_time.isoformat(),
                "tags": _tags(backend, inst.id),
            })
    return saved


def restore_groups(backend: Any, groups: list[dict[str, Any]]) -> None:
    for data in groups:
        with _next_id(moto_groups, "random_security_group_id", data["id"]):
            backend.create_security_group(data["name"], data["description"], tags=data["tags"] or None, force=True)
        for rule in data["ingress"]:
            backend.authorize_security_group_ingress(data["id"], rule["protocol"], rule["from"], rule["to"],
                                                     [rule["range"]])


def restore_instances(backend: Any, region: str, instances: list[dict[str, Any]]) -> None:
    for data in instances:
        options: dict[str, Any] = {}
        if data["spot"]:
            options["instance_market_options"] = {"MarketType": "spot"}
        with _next_id(moto_instances, "random_instance_id", data["id"]):
            reservation = backend.run_instances(
                data["image_id"], 1, Base64EncodedString(data["user_data"]) if data["user_data"] else None, [],
                security_group_ids=list(data["groups"]), instance_type=data["instance_type"],
                is_instance_type_default=False, key_name=data["key_name"], region_name=region,
                placement=data["zone"], instance_initiated_shutdown_behavior=data["shutdown_behavior"],
                metadata_options=data["metadata"], block_device_mappings=data["devices"],
                tags={"instance": data["tags"]}, **options)
        inst = reservation.instances[0]
        inst.launch_time = datetime.fromisoformat(data["launch_time"])
        if data["state"] in ("stopped", "stopping"):
            inst.stop()

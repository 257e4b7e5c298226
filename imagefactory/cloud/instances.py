"""Instances through the EC2 API: run, describe, wait, stop, start, terminate, and the checks before a run.

Security defaults (DESIGN §6) for the instance itself live here: every instance requires IMDSv2, has an
encrypted root volume, stops (not terminates) when shut down from inside, and is tagged
managed-by=imagefactory. Who may reach it (the key pair, the ssh security group) is `cloud.access`.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from imagefactory.cloud.target import Target
from imagefactory.errors import CloudError
from imagefactory.tags import MANAGED_TAG
from imagefactory.waiting import WaitTimeout, wait_for

SSH_PORT = 22
RUN_TIMEOUT = 300.0  # seconds until an instance runs
SSH_TIMEOUT = 300.0  # seconds until its sshd answers


@dataclass(frozen=True)
class RunSpec:
    """Everything run_instances needs; `tags` go on the instance and its root volume."""

    ami: str
    instance_type: str
    key_name: str
    group_id: str
    root_device: str
    volume_gb: int
    user_data: str
    tags: dict[str, str] = field(default_factory=dict)
    spot: bool = False


@lru_cache(maxsize=1)
def known_instance_types() -> frozenset[str]:
    """Every type the EC2 API knows, from botocore's service model (offline, as current as boto3)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("ec2")
    return frozenset(model.shape_for("InstanceType").enum)


def check_instance_type(kind: str) -> str:
    if kind not in known_instance_types():
        near = sorted(t for t in known_instance_types() if t.startswith(kind.split(".")[0] + "."))[:8]
        raise CloudError(f"unknown instance type {kind!r}",
                         f"e.g. {', '.join(near)}" if near else "e.g. t3.medium, m5.large, g4dn.xlarge")
    return kind


def tag(key: str, value: str) -> dict[str, str]:
    return {"Key": key, "Value": value}


def root_device(target: Target, region: str, ami: str) -> tuple[str, int]:
    """The AMI's root device name and size (GiB)."""
    images = target.client("ec2", region).describe_images(ImageIds=[ami])["Images"]
    if not images:
        raise CloudError(f"AMI {ami} is not in {region}", "the catalog points at an image the cloud forgot")
    image = images[0]
    name = image.get("RootDeviceName", "/dev/sda1")
    size = next((m["Ebs"].get("VolumeSize", 8) for m in image.get("BlockDeviceMappings", [])
                 if m.get("DeviceName") == name and "Ebs" in m), 8)
    return name, int(size)


def run_instance(target: Target, region: str, spec: RunSpec) -> dict[str, Any]:
    tags = [tag(k, v) for k, v in {**spec.tags, MANAGED_TAG[0]: MANAGED_TAG[1]}.items()]
    args: dict[str, Any] = {
        "ImageId": spec.ami, "InstanceType": spec.instance_type, "MinCount": 1, "MaxCount": 1,
        "KeyName": spec.key_name, "SecurityGroupIds": [spec.group_id], "UserData": spec.user_data,
        "InstanceInitiatedShutdownBehavior": "stop",
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1},
        "BlockDeviceMappings": [{"DeviceName": spec.root_device, "Ebs": {
            "VolumeSize": spec.volume_gb, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True}}],
        "TagSpecifications": [{"ResourceType": kind, "Tags": tags} for kind in ("instance", "volume")],
    }
    if spec.spot:  # persistent + stop on interruption: the only spot kind that can be stopped and started
        args["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
            "SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"}}
    return target.client("ec2", region).run_instances(**args)["Instances"][0]


def describe(target: Target, region: str, instance_id: str) -> dict[str, Any] | None:
    reservations = target.client("ec2", region).describe_instances(
        Filters=[{"Name": "instance-id", "Values": [instance_id]}])["Reservations"]
    found = [i for r in reservations for i in r["Instances"]]
    return found[0] if found else None


WAITERS = {"running": "instance_running", "stopped": "instance_stopped", "terminated": "instance_terminated"}


def wait_state(target: Target, region: str, instance_id: str, state: str, timeout: float) -> dict[str, Any]:
    """Wait with EC2's own waiter until the instance is in `state` (running, stopped or terminated)."""
    from botocore.exceptions import WaiterError

    delay = 1 if target.sandbox else 5
    waiter = target.client("ec2", region).get_waiter(WAITERS[state])
    try:
        waiter.wait(InstanceIds=[instance_id],
                    WaiterConfig={"Delay": delay, "MaxAttempts": max(1, int(timeout // delay))})
    except WaiterError:
        instance = describe(target, region, instance_id)
        current = instance["State"]["Name"] if instance else "gone"
        raise CloudError(f"instance {instance_id} is {current}, not {state}, after {timeout:.0f} s",
                         f"see the EC2 console for {region}") from None
    instance = describe(target, region, instance_id)
    if instance is None:
        raise CloudError(f"instance {instance_id} is gone, not {state}", f"see the EC2 console for {region}")
    return instance


def wait_ssh(host: str, port: int, timeout: float) -> float:
    """Wait until an ssh server answers at host:port with its banner; returns the seconds waited."""
    started = time.monotonic()

    def banner() -> bool:
        try:
            with socket.create_connection((host, port), timeout=5) as conn:
                conn.settimeout(5)
                return conn.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    try:
        wait_for(banner, timeout=timeout, interval=1.0, what=f"ssh at {host}:{port}")
    except WaitTimeout:
        raise CloudError(f"ssh at {host}:{port} did not answer within {timeout:.0f} s",
                         "check the security group allows your address (--cidr)") from None
    return time.monotonic() - started


def managed(target: Target, regions: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
    """Every non-terminated instance tagged managed-by=imagefactory in `regions`, as (region, instance)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for region in regions:
        reservations = target.client("ec2", region).describe_instances(Filters=[
            {"Name": f"tag:{MANAGED_TAG[0]}", "Values": [MANAGED_TAG[1]]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
        out.extend((region, i) for r in reservations["Reservations"] for i in r["Instances"])
    return out


def tags_of(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def change_state(target: Target, region: str, instance_id: str, action: str) -> str:
    """stop, start or terminate; returns the state the API reports right after."""
    ec2 = target.client("ec2", region)
    if action == "stop":
        return ec2.stop_instances(InstanceIds=[instance_id])["StoppingInstances"][0]["CurrentState"]["Name"]
    if action == "start":
        return ec2.start_instances(InstanceIds=[instance_id])["StartingInstances"][0]["CurrentState"]["Name"]
    instance = describe(target, region, instance_id)
    request = instance.get("SpotInstanceRequestId") if instance else None
    if request:  # a persistent spot request would start a replacement: cancel it first
        ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=[request])
    return ec2.terminate_instances(InstanceIds=[instance_id])["TerminatingInstances"][0]["CurrentState"]["Name"]

"""Instances through the EC2 API: key pairs, the ssh security group, run, wait, stop, start, terminate.

Security defaults (DESIGN §6) live here: the key pair is made locally (ssh-keygen, ed25519) and only its
public half is imported, the private key is written 0400 and never printed; the security group allows
ssh (22/tcp) from one address only, never 0.0.0.0/0; every instance requires IMDSv2, has an encrypted
root volume, stops (not terminates) when shut down from inside, and is tagged managed-by=imagefactory.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from imagefactory import proc
from imagefactory.cloud.target import Target
from imagefactory.errors import CloudError
from imagefactory.waiting import WaitTimeout, wait_for

MANAGED_TAG = ("managed-by", "imagefactory")
CHECKIP_URL = "https://checkip.amazonaws.com"
SSH_PORT = 22
RUN_TIMEOUT = 300.0  # seconds until an instance runs
SSH_TIMEOUT = 300.0  # seconds until its sshd answers
WIDEST_PREFIX = {4: 24, 6: 56}  # the widest ssh source allowed without --allow-wide-cidr
KEY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class KeyPair:
    name: str
    path: Path
    created_local: bool    # the .pem file was made by this call
    created_remote: bool   # the cloud's key pair was imported by this call
    public_key: str        # the OpenSSH public key line


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


def key_path(target: Target, region: str, ssh_dir: Path | None = None) -> Path:
    ssh_dir = ssh_dir or Path.home() / ".ssh"
    kind = "sandbox-" if target.sandbox else ""
    return ssh_dir / f"imagefactory-{kind}{region}.pem"


def _public_key(pem: Path) -> str:
    return proc.run(["ssh-keygen", "-y", "-f", str(pem)], timeout=30).stdout.strip()


def _new_private_key(pem: Path) -> None:
    """ssh-keygen an ed25519 key into a private temp dir, then move it to `pem` with mode 0400."""
    pem.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=pem.parent, prefix=".imagefactory-key-") as tmp:
        path = Path(tmp) / "key"
        proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", pem.stem, "-f", str(path)], timeout=30)
        path.chmod(0o400)
        os.replace(path, pem)


def ensure_key_pair(target: Target, region: str, name: str | None = None, ssh_dir: Path | None = None) -> KeyPair:
    """The local key (made if missing) and its cloud key pair (its public half imported if missing).

    Without `name` the key is ~/.ssh/imagefactory-[sandbox-]REGION.pem and its cloud name is derived from
    the public key, so that name can never point at another private key. With `name` (--key) the private
    key is ~/.ssh/NAME.pem; a cloud key pair of that name without the local file is an error.
    """
    ssh_dir = ssh_dir or Path.home() / ".ssh"
    if name is not None and not KEY_NAME_RE.fullmatch(name):
        raise CloudError(f"--key {name!r} is not a valid key pair name", "use letters, digits, '.', '-' and '_'")
    pem = key_path(target, region, ssh_dir) if name is None else ssh_dir / f"{name}.pem"
    ec2 = target.client("ec2", region)
    if name is not None and not pem.exists() and _remote_key(ec2, name):
        raise CloudError(f"key pair {name!r} exists in {region} but its private key {pem} is not here",
                         "put the key there (mode 0400), or pass another --key")
    created_local = not pem.exists()
    if created_local:
        _new_private_key(pem)
    elif pem.stat().st_mode & 0o077:
        pem.chmod(0o400)
    public = _public_key(pem)
    name = name or "imagefactory-" + hashlib.sha256(public.split()[1].encode()).hexdigest()[:12]
    found = _remote_key(ec2, name)
    if not found:
        ec2.import_key_pair(KeyName=name, PublicKeyMaterial=public.encode(), TagSpecifications=[
            {"ResourceType": "key-pair", "Tags": [_tag(*MANAGED_TAG)]}])
    return KeyPair(name, pem, created_local, not found, public)


def _remote_key(ec2: Any, name: str) -> bool:
    return bool(ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [name]}])["KeyPairs"])


def delete_key_pair(target: Target, region: str, key: KeyPair) -> None:
    """Undo what ensure_key_pair made (only what that call made)."""
    if key.created_remote:
        target.client("ec2", region).delete_key_pair(KeyName=key.name)
    if key.created_local:
        key.path.unlink(missing_ok=True)


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


def check_cidr(cidr: str, *, allow_wide: bool = False) -> str:
    """The ssh source as a network. Never the whole internet; nothing wider than a /24 (IPv6: a /56, one
    site) unless `allow_wide` (--allow-wide-cidr): every address in it could try the instance's ssh."""
    try:
        net = ipaddress.ip_network(cidr.strip(), strict=True)
    except ValueError as exc:
        raise CloudError(f"--cidr {cidr!r} is not a network address: {exc}",
                         "pass your address as A.B.C.D/32") from None
    if net.prefixlen == 0:
        raise CloudError(f"--cidr {cidr} would open ssh to the whole internet", "pass your own address as A.B.C.D/32")
    widest = WIDEST_PREFIX[net.version]
    if net.prefixlen < widest and not allow_wide:
        raise CloudError(f"--cidr {cidr} lets {net.num_addresses:,} addresses try ssh on the instance, more than "
                         f"a /{widest}", "pass your own address (A.B.C.D/32), or add --allow-wide-cidr if you "
                         "mean it")
    return str(net)


def caller_cidr(target: Target, timeout: float = 5.0) -> str:
    """The caller's public address as a /32 (looked up over HTTPS); 127.0.0.1/32 in the sandbox."""
    if target.sandbox:
        return "127.0.0.1/32"
    import requests

    try:
        answer = requests.get(CHECKIP_URL, timeout=(timeout, timeout))
        answer.raise_for_status()
        address = ipaddress.ip_address(answer.text.strip())
    except (requests.RequestException, ValueError) as exc:
        raise CloudError(f"could not look up your public address at {CHECKIP_URL}: {type(exc).__name__}",
                         "pass --cidr YOUR.PUBLIC.IP/32") from None
    return f"{address}/{address.max_prefixlen}"


def _tag(key: str, value: str) -> dict[str, str]:
    return {"Key": key, "Value": value}


def group_name(cidr: str) -> str:
    return "imagefactory-ssh-" + cidr.replace(".", "-").replace(":", "-").replace("/", "_")


def ensure_security_group(target: Target, region: str, cidr: str) -> tuple[str, bool]:
    """A group in the default VPC allowing ssh from `cidr` only: (group id, created by this call)."""
    ec2 = target.client("ec2", region)
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise CloudError(f"{region} has no default VPC", "create one with 'aws ec2 create-default-vpc'")
    vpc = vpcs[0]["VpcId"]
    name = group_name(cidr)
    found = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]},
                                                  {"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
    if found:
        return found[0]["GroupId"], False
    group = ec2.create_security_group(
        GroupName=name, VpcId=vpc, Description=f"imagefactory: ssh from {cidr} only",
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [_tag(*MANAGED_TAG), _tag("Name", name)]}])
    ranges = "Ipv6Ranges" if ":" in cidr else "IpRanges"
    key = "CidrIpv6" if ":" in cidr else "CidrIp"
    try:
        ec2.authorize_security_group_ingress(GroupId=group["GroupId"], IpPermissions=[{
            "IpProtocol": "tcp", "FromPort": SSH_PORT, "ToPort": SSH_PORT,
            ranges: [{key: cidr, "Description": "ssh from the launching machine"}]}])
    except Exception:
        ec2.delete_security_group(GroupId=group["GroupId"])
        raise
    return group["GroupId"], True


def delete_security_group(target: Target, region: str, group_id: str, timeout: float = 180.0) -> None:
    """Delete a group; on AWS a just-terminated instance may hold it a little while (DependencyViolation)."""
    from botocore.exceptions import ClientError

    ec2 = target.client("ec2", region)
    last: list[ClientError] = []

    def deleted() -> bool:
        try:
            ec2.delete_security_group(GroupId=group_id)
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "DependencyViolation":
                raise
            last[:] = [exc]
            return False

    try:
        wait_for(deleted, timeout=timeout, interval=5.0, what=f"deleting security group {group_id}")
    except WaitTimeout:
        raise last[0] from None


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
    tags = [_tag(k, v) for k, v in {**spec.tags, MANAGED_TAG[0]: MANAGED_TAG[1]}.items()]
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

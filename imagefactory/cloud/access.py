"""Who may reach an instance: its key pair and its ssh security group.

The key pair is made locally (ssh-keygen, ed25519) and only its public half is imported; the private key
is written 0400 and never printed. The security group allows ssh (22/tcp) from one source network only:
the caller's address by default, never 0.0.0.0/0, nothing wider than a /24 (IPv6 /56) unless asked.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagefactory import proc
from imagefactory.cloud.instances import SSH_PORT, tag
from imagefactory.cloud.target import Target
from imagefactory.errors import CloudError
from imagefactory.tags import MANAGED_TAG
from imagefactory.waiting import WaitTimeout, wait_for

CHECKIP_URL = "https://checkip.amazonaws.com"
WIDEST_PREFIX = {4: 24, 6: 56}  # the widest ssh source allowed without --allow-wide-cidr
KEY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class KeyPair:
    name: str
    path: Path
    created_local: bool    # the .pem file was made by this call
    created_remote: bool   # the cloud's key pair was imported by this call
    public_key: str        # the OpenSSH public key line


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
            {"ResourceType": "key-pair", "Tags": [tag(*MANAGED_TAG)]}])
    return KeyPair(name, pem, created_local, not found, public)


def _remote_key(ec2: Any, name: str) -> bool:
    return bool(ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [name]}])["KeyPairs"])


def delete_key_pair(target: Target, region: str, key: KeyPair) -> None:
    """Undo what ensure_key_pair made (only what that call made)."""
    if key.created_remote:
        target.client("ec2", region).delete_key_pair(KeyName=key.name)
    if key.created_local:
        key.path.unlink(missing_ok=True)


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
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [tag(*MANAGED_TAG), tag("Name", name)]}])
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

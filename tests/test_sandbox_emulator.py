"""The sandbox EC2 emulator, for real: server subprocesses in a tmp state dir, boto3 clients against them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import sandbox_client
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from imagefactory.errors import SandboxError
from imagefactory.sandbox import SANDBOX_ACCOUNT_ID, EmulatorInfo, down, ensure_up, status

REPO = Path(__file__).resolve().parents[1]
CANONICAL = "099720109477"
JAMMY_AMD64 = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"
NOBLE_ARM64 = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-*"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def _stop_all(state_dir: Path, pids: set[int]) -> None:
    """Finalizer: stop the server of `state_dir`, and any other server pid a test saw."""
    down(state_dir)
    for pid in pids:
        if _pid_alive(pid):
            os.kill(pid, 9)


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "emulator"
    yield path
    _stop_all(path, set())


@pytest.fixture(scope="module")
def shared() -> Iterator[EmulatorInfo]:
    """One emulator for the read-only tests."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "emulator"
        info = ensure_up(path)
        try:
            yield info
        finally:
            _stop_all(path, {info.pid})


def _client(info: EmulatorInfo, service: str, region: str) -> Any:
    return sandbox_client(info.endpoint, service, region)


def _newest(ec2: Any, name_pattern: str) -> dict[str, Any]:
    """What Packer's `source_ami_filter { most_recent = true }` picks."""
    images = ec2.describe_images(
        Owners=[CANONICAL],
        Filters=[
            {"Name": "name", "Values": [name_pattern]},
            {"Name": "virtualization-type", "Values": ["hvm"]},
            {"Name": "root-device-type", "Values": ["ebs"]},
        ],
    )["Images"]
    assert images, f"no image matches {name_pattern}"
    return max(images, key=lambda image: image["CreationDate"])


def _listens_on_loopback_only(port: int) -> bool:
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:] + Path("/proc/net/tcp6").read_text().splitlines()[1:]
    listening = [row.split()[1] for row in rows if row.split()[3] == "0A"]  # 0A: LISTEN
    ours = [local for local in listening if int(local.rpartition(":")[2], 16) == port]
    return ours == ["0100007F:" + f"{port:04X}"]


# --------------------------------------------------------------------------------------------- lifecycle
def test_start_reuse_status_down(state_dir: Path) -> None:
    assert status(state_dir) is None
    started = time.monotonic()
    info = ensure_up(state_dir)
    print(f"start-up: {time.monotonic() - started:.2f} s")
    assert not info.reused
    assert info.endpoint == f"http://127.0.0.1:{info.port}"
    assert _pid_alive(info.pid)
    assert _listens_on_loopback_only(info.port)
    assert {"server.json", "server.log", "server.lock"} <= {p.name for p in state_dir.iterdir()}

    again = ensure_up(state_dir)
    assert (again.pid, again.port, again.reused) == (info.pid, info.port, True)
    assert status(state_dir) == again
    identity = _client(info, "sts", "us-east-1").get_caller_identity()
    assert identity["Account"] == SANDBOX_ACCOUNT_ID

    assert down(state_dir) is True
    assert not _pid_alive(info.pid)
    assert status(state_dir) is None
    assert not (state_dir / "server.json").exists()
    assert down(state_dir) is False


_ENSURE_UP_SCRIPT = """
import json, sys
from pathlib import Path
from imagefactory.sandbox import ensure_up
info = ensure_up(Path(sys.argv[1]))
print(json.dumps({"pid": info.pid, "port": info.port, "reused": info.reused}))
"""


def test_concurrent_ensure_up_starts_one_server(state_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ENSURE_UP_SCRIPT, str(state_dir)], stdout=subprocess.PIPE, env=env, text=True
        )
        for _ in range(4)
    ]
    results = [json.loads(proc.communicate(timeout=60)[0]) for proc in procs]
    pids = {result["pid"] for result in results}
    try:
        assert all(proc.returncode == 0 for proc in procs)
        assert len(pids) == 1
        assert len({result["port"] for result in results}) == 1
        assert sorted(result["reused"] for result in results) == [False, True, True, True]
        assert status(state_dir).pid in pids  # type: ignore[union-attr]  # outlived the commands
    finally:
        _stop_all(state_dir, pids)


def test_stale_server_file_is_cleaned_and_replaced(state_dir: Path) -> None:
    state_dir.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for stale_pid in (dead.pid, os.getpid()):  # a dead process, and a live one that is not our server
        (state_dir / "server.json").write_text(json.dumps({"pid": stale_pid, "port": 9}))
        assert status(state_dir) is None
        assert not (state_dir / "server.json").exists()

    (state_dir / "server.json").write_text(json.dumps({"pid": dead.pid, "port": 9}))
    info = ensure_up(state_dir)
    assert not info.reused
    assert info.pid != dead.pid
    assert json.loads((state_dir / "server.json").read_text())["pid"] == info.pid


def test_unreadable_state_fails_with_the_log_path(state_dir: Path) -> None:
    state_dir.mkdir(parents=True)
    (state_dir / "state.json").write_text("{not json")
    with pytest.raises(SandboxError) as error:
        ensure_up(state_dir, timeout=15)
    assert str(state_dir / "server.log") in error.value.hint
    assert "JSONDecodeError" in error.value.message
    assert status(state_dir) is None


# ----------------------------------------------------------------------------------------------- seeding
@pytest.mark.parametrize("region", ["us-west-2", "us-east-2", "eu-west-1", "ap-southeast-2"])
def test_seeded_ubuntu_images(shared: EmulatorInfo, region: str) -> None:
    ec2 = _client(shared, "ec2", region)
    jammy = _newest(ec2, JAMMY_AMD64)
    assert jammy["Name"] == "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240301"
    assert jammy["CreationDate"].startswith("2024-03-01T")
    assert jammy["Description"] == "Canonical, Ubuntu, 22.04 LTS, amd64 jammy image build on 2024-03-01"
    assert (jammy["OwnerId"], jammy["Public"], jammy["State"]) == (CANONICAL, True, "available")
    assert (jammy["Architecture"], jammy["VirtualizationType"]) == ("x86_64", "hvm")
    assert (jammy["RootDeviceType"], jammy["RootDeviceName"]) == ("ebs", "/dev/sda1")
    assert "ImageOwnerAlias" not in jammy

    noble = _newest(ec2, NOBLE_ARM64)
    assert noble["Name"] == "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-20240801"
    assert noble["Architecture"] == "arm64"

    everything = ec2.describe_images()["Images"]
    assert {image["OwnerId"] for image in everything} == {CANONICAL}  # none of moto's default AMIs
    assert len(everything) == 12


def test_seeded_images_in_every_region_with_distinct_ids(shared: EmulatorInfo) -> None:
    regions = [r["RegionName"] for r in _client(shared, "ec2", "us-east-1").describe_regions()["Regions"]]
    assert len(regions) >= 15
    ids = {region: _newest(_client(shared, "ec2", region), JAMMY_AMD64)["ImageId"] for region in regions}
    assert len(set(ids.values())) == len(regions)


# ------------------------------------------------------------------------------------------- persistence
def _public_key() -> str:
    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def _make_things(info: EmulatorInfo) -> dict[str, str]:
    """Create an image (run + create), copy it to another region, share, tag, import a key, deregister one."""
    east, west = _client(info, "ec2", "us-east-2"), _client(info, "ec2", "us-west-2")
    base = _newest(east, JAMMY_AMD64)["ImageId"]
    instance = east.run_instances(ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.micro")
    image = east.create_image(InstanceId=instance["Instances"][0]["InstanceId"], Name="demo-20250101")["ImageId"]
    east.create_tags(Resources=[image], Tags=[{"Key": "imagefactory:recipe", "Value": "demo"}])
    east.modify_image_attribute(
        ImageId=image,
        LaunchPermission={
            "Add": [
                {"UserId": "111122223333"},
                {"OrganizationArn": "arn:aws:organizations::123456789012:organization/o-abc123def4"},
            ]
        },
    )
    snapshot = east.describe_images(ImageIds=[image])["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    east.modify_snapshot_attribute(
        SnapshotId=snapshot, Attribute="createVolumePermission", OperationType="add", UserIds=["111122223333"]
    )
    copy = west.copy_image(SourceImageId=image, SourceRegion="us-east-2", Name="demo-20250101")["ImageId"]
    west.create_tags(Resources=[copy], Tags=[{"Key": "imagefactory:recipe", "Value": "demo"}])
    gone = west.register_image(Name="to-be-deregistered")["ImageId"]
    west.deregister_image(ImageId=gone)
    east.import_key_pair(KeyName="imagefactory-demo", PublicKeyMaterial=_public_key().encode())
    _client(info, "ssm", "us-east-2").put_parameter(
        Name="/imagefactory/demo/latest", Value=image, Type="String", DataType="aws:ec2:image"
    )
    group = west.create_security_group(GroupName="imagefactory-lab", Description="ssh from one address")["GroupId"]
    west.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "198.51.100.7/32"}]}])
    west.import_key_pair(KeyName="lab-key", PublicKeyMaterial=_public_key().encode())
    launched = {}
    for name, spot in (("running", False), ("stopped", True), ("terminated", False)):
        args: dict[str, Any] = {"InstanceMarketOptions": {"MarketType": "spot"}} if spot else {}
        launched[name] = west.run_instances(  # what `launch` asks for
            ImageId=copy, InstanceType="t3.medium", MinCount=1, MaxCount=1, KeyName="lab-key",
            SecurityGroupIds=[group], UserData="#cloud-config\n", InstanceInitiatedShutdownBehavior="stop",
            MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1},
            BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 20, "VolumeType": "gp3",
                                                                    "Encrypted": True, "DeleteOnTermination": True}}],
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "imagefactory:image", "Value": name}]}],
            **args)["Instances"][0]["InstanceId"]
    west.stop_instances(InstanceIds=[launched["stopped"]])
    west.terminate_instances(InstanceIds=[launched["terminated"]])
    return {"base": base, "image": image, "copy": copy, "gone": gone, "snapshot": snapshot, "group": group,
            **{f"instance-{k}": v for k, v in launched.items()}}


def _instances(ec2: Any) -> list[dict[str, Any]]:
    """The launched instances as `invoke instances` and `launch` read them (volume ids are new on a restart)."""
    found = []
    for reservation in ec2.describe_instances()["Reservations"]:
        for i in reservation["Instances"]:
            volumes = [m["Ebs"]["VolumeId"] for m in i.get("BlockDeviceMappings", [])]
            found.append({
                **{k: i.get(k) for k in ("InstanceId", "ImageId", "InstanceType", "KeyName", "LaunchTime",
                                         "InstanceLifecycle", "Tags")},
                "state": i["State"]["Name"], "zone": i["Placement"]["AvailabilityZone"],
                "groups": i["SecurityGroups"], "tokens": i["MetadataOptions"]["HttpTokens"],
                "volumes": [(v["Size"], v["Encrypted"]) for v in ec2.describe_volumes(VolumeIds=volumes)["Volumes"]],
                "user_data": ec2.describe_instance_attribute(InstanceId=i["InstanceId"], Attribute="userData")[
                    "UserData"],
            })
    return sorted(found, key=lambda i: i["InstanceId"])


def _observe(info: EmulatorInfo, ids: dict[str, str]) -> dict[str, Any]:
    """Everything the persistence round trip must keep, as boto3 reports it."""
    east, west = _client(info, "ec2", "us-east-2"), _client(info, "ec2", "us-west-2")
    own_east = east.describe_images(Owners=["self"])["Images"]
    own_west = west.describe_images(Owners=["self"])["Images"]
    return {
        "base": _newest(east, JAMMY_AMD64)["ImageId"],
        "images": sorted(own_east + own_west, key=lambda image: image["ImageId"]),
        "launch": east.describe_image_attribute(ImageId=ids["image"], Attribute="launchPermission")[
            "LaunchPermissions"
        ],
        "snapshot": east.describe_snapshot_attribute(SnapshotId=ids["snapshot"], Attribute="createVolumePermission")[
            "CreateVolumePermissions"
        ],
        "keys": east.describe_key_pairs(IncludePublicKey=True)["KeyPairs"],
        "parameter": _client(info, "ssm", "us-east-2").get_parameter(Name="/imagefactory/demo/latest")["Parameter"],
        "groups": sorted((g["GroupId"], g["GroupName"], g["Description"], str(g["IpPermissions"]))
                         for g in west.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"),
        "instances": _instances(west),
    }


def test_state_persists_across_restart(state_dir: Path) -> None:
    first = ensure_up(state_dir)
    ids = _make_things(first)
    before = _observe(first, ids)
    assert [image["ImageId"] for image in before["images"]] == sorted([ids["image"], ids["copy"]])
    assert len(before["launch"]) == 2
    assert len(before["keys"]) == 1
    assert os.stat(state_dir / "state.json").st_mode & 0o777 == 0o600

    assert down(state_dir)
    second = ensure_up(state_dir)
    assert second.pid != first.pid and not second.reused
    after = _observe(second, ids)

    kept = [i for i in before["instances"] if i["InstanceId"] != ids["instance-terminated"]]
    assert [(i["InstanceId"], i["state"]) for i in kept] == sorted([(ids["instance-running"], "running"),
                                                                    (ids["instance-stopped"], "stopped")])
    assert before["groups"][0][0] == ids["group"] and "198.51.100.7/32" in before["groups"][0][3]
    assert after == {**before, "instances": kept}
    assert after["base"] == ids["base"]
    images = {image["ImageId"]: image for image in after["images"]}
    assert images[ids["image"]]["Tags"] == [{"Key": "imagefactory:recipe", "Value": "demo"}]
    assert images[ids["image"]]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] == ids["snapshot"]
    west = _client(second, "ec2", "us-west-2")
    assert west.describe_images(ImageIds=[ids["gone"]])["Images"] == []


def test_moto_reset_forgets_user_state_but_keeps_seeded_images(state_dir: Path) -> None:
    info = ensure_up(state_dir)
    ec2 = _client(info, "ec2", "eu-west-1")
    base = _newest(ec2, JAMMY_AMD64)["ImageId"]
    ec2.register_image(Name="scratch")
    assert json.loads((state_dir / "state.json").read_text())["ec2"]

    request = urllib.request.Request(f"{info.endpoint}/moto-api/reset", method="POST")
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as response:
        assert response.status == 200

    assert ec2.describe_images(Owners=["self"])["Images"] == []
    assert _newest(ec2, JAMMY_AMD64)["ImageId"] == base
    assert json.loads((state_dir / "state.json").read_text())["ec2"] == {}

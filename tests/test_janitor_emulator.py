"""The janitor against the real emulator (real boto3, the real CLI): it finds and removes exactly what carries
the factory's tag or Packer's naming and that nothing accounts for, and never touches anything else."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from conftest import cli_env, run_cli, sandbox_client

from imagefactory.cloud.target import Target
from imagefactory.home import Home
from imagefactory.sandbox.emulator import ensure_up, sandbox_credentials

REGION = "us-west-2"
MANAGED = {"Key": "managed-by", "Value": "imagefactory"}
ROLE = {"Key": "imagefactory:role", "Value": "build"}
PACKER_SG = "packer_5fc7a1b2-0000-0000-0000-000000000001"
PACKER_KEY = "packer_5fc7a1b2-0000-0000-0000-000000000002"
PACKER_SG_USED = "packer_5fc7a1b2-0000-0000-0000-000000000003"


def _ec2(home: Home) -> Any:
    return sandbox_client(ensure_up(home.emulator_dir).endpoint, "ec2", REGION)


def _run(ec2: Any, base: str, *, key: str | None = None, group: str | None = None,
         tags: list[dict[str, str]] | None = None) -> str:
    args: dict[str, Any] = {"KeyName": key} if key else {}
    if group:
        args["SecurityGroupIds"] = [group]
    if tags:
        args["TagSpecifications"] = [{"ResourceType": "instance", "Tags": tags}]
    return ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.micro", **args)["Instances"][0][
        "InstanceId"]


def _image(ec2: Any, instance: str, name: str, tags: list[dict[str, str]]) -> tuple[str, str]:
    ami = ec2.create_image(InstanceId=instance, Name=name)["ImageId"]
    snap = ec2.describe_images(ImageIds=[ami])["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    if tags:
        ec2.create_tags(Resources=[ami, snap], Tags=tags)
    return ami, snap


def _seed(home: Home) -> dict[str, str]:
    """Things of others (no tag, no Packer naming) next to the factory's own, found and not."""
    ec2 = _ec2(home)
    base = ec2.describe_images(Owners=["099720109477"])["Images"][0]["ImageId"]
    ec2.import_key_pair(KeyName="someones-key", PublicKeyMaterial=_public_key())
    ids = {"their_key": "someones-key",
           "their_group": ec2.create_security_group(GroupName="someones-group", Description="x")["GroupId"]}
    ids["their_instance"] = _run(ec2, base, key="someones-key", group=ids["their_group"],
                                 tags=[{"Key": "imagefactory:role", "Value": "build"}])  # a role tag alone: not ours
    ids["their_ami"], ids["their_snap"] = _image(ec2, ids["their_instance"], "someones-image", [])
    ids["launched"] = _run(ec2, base, tags=[MANAGED, {"Key": "imagefactory:image", "Value": "demo"}])
    ids["recorded_ami"], ids["recorded_snap"] = _image(ec2, ids["launched"], "imagefactory/demo/b1", [MANAGED])
    ids["used_ami"], _ = _image(ec2, ids["launched"], "imagefactory/demo/b2", [MANAGED])
    ids["from_used"] = _run(ec2, ids["used_ami"], tags=[MANAGED])
    ids["packer_group_used"] = ec2.create_security_group(GroupName=PACKER_SG_USED, Description="x")["GroupId"]
    ids["user_of_packer_group"] = _run(ec2, base, group=ids["packer_group_used"])
    # the factory's, accounted for by nothing:
    ids["build_instance"] = _run(ec2, base, tags=[MANAGED, ROLE, {"Key": "imagefactory:build-id", "Value": "b9"}])
    ids["orphan_ami"], ids["orphan_snap"] = _image(ec2, ids["launched"], "imagefactory/demo/b3", [MANAGED])
    volume = ec2.describe_instances(InstanceIds=[ids["launched"]])["Reservations"][0]["Instances"][0][
        "BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    ids["loose_snap"] = ec2.create_snapshot(VolumeId=volume, TagSpecifications=[
        {"ResourceType": "snapshot", "Tags": [MANAGED]}])["SnapshotId"]
    ids["packer_group"] = ec2.create_security_group(GroupName=PACKER_SG, Description="x")["GroupId"]
    ec2.create_key_pair(KeyName=PACKER_KEY)
    ids["packer_key"] = PACKER_KEY
    disk = home.sandbox_dir / "instances" / "i-0123456789abcdef0"
    (disk / "etc").mkdir(parents=True)
    (disk / "etc" / "hostname").write_text("gone\n")
    _record(home, {REGION: ids["recorded_ami"]})
    return ids


def _public_key() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


def _record(home: Home, amis: dict[str, str]) -> None:
    from imagefactory import catalog

    build = catalog.Build(id="b1", created="2026-12-01T00:00:00Z", status="available", target="sandbox",
                          account="123456789012", commit="0" * 40, ref=None, recipe_digest="sha256:x", amis=amis)
    path = home.catalog_path("sandbox")
    catalog.ensure_file(path)
    catalog.update(path, lambda cat: catalog.record(cat, name="demo", repo="file:///demo", recipe="recipes/demo.yaml",
                                                    recipe_digest="sha256:x", build=build))


def _janitor(home: Home, *args: str) -> dict[str, Any]:
    done = run_cli(home, "janitor", "--json", *(args if "--region" in args else ("--region", REGION, *args)))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _exists(ec2: Any) -> dict[str, set[str]]:
    live = ec2.describe_instances(Filters=[{"Name": "instance-state-name",
                                            "Values": ["pending", "running", "stopping", "stopped"]}])
    return {"instances": {i["InstanceId"] for r in live["Reservations"] for i in r["Instances"]},
            "images": {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]},
            "snapshots": {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]},
            "groups": {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]},
            "keys": {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]}}


@pytest.fixture
def seeded(home: Home) -> dict[str, str]:
    return _seed(home)


def test_janitor_removes_only_the_factorys_unaccounted_things(home: Home, seeded: dict[str, str]) -> None:
    ids = seeded
    found = _janitor(home)
    by_id = {f["id"]: f for f in found["findings"]}
    expected = {ids[k] for k in ("build_instance", "orphan_ami", "loose_snap", "packer_group", "packer_key")}
    assert set(by_id) == expected | {"i-0123456789abcdef0"}, found["findings"]
    assert by_id[ids["orphan_ami"]]["snapshots"] == [ids["orphan_snap"]]
    assert by_id[ids["orphan_ami"]]["cost"].endswith("GiB of snapshots")
    assert by_id[ids["orphan_ami"]]["monthly_usd"] == pytest.approx(0.75)  # 15 GiB x $0.05
    assert by_id["i-0123456789abcdef0"]["kind"] == "instance disk"
    kept = {k["id"]: k["reason"] for k in found["kept"]}
    assert "instances were launched from it" in kept[ids["used_ami"]] and ids["from_used"] in kept[ids["used_ami"]]
    assert kept[ids["packer_group_used"]] == f"used by {ids['user_of_packer_group']}"
    assert found["removed"] is None

    ec2 = _ec2(home)
    before = _exists(ec2)
    refused = run_cli(home, "janitor", "--region", REGION, "--delete")  # no terminal, no --yes
    assert refused.returncode == 1 and "pass --yes" in refused.stderr, refused.stderr
    assert _exists(ec2) == before

    done = _janitor(home, "--delete", "--yes")
    assert len(done["removed"]) == len(expected) + 1 and done["failed"] == [], done
    after = _exists(ec2)
    for key in ("their_instance", "launched", "from_used", "user_of_packer_group"):
        assert ids[key] in after["instances"], key
    assert ids["build_instance"] not in after["instances"]
    assert {ids["their_ami"], ids["recorded_ami"], ids["used_ami"]} <= after["images"]
    assert ids["orphan_ami"] not in after["images"]
    assert {ids["their_snap"], ids["recorded_snap"]} <= after["snapshots"]
    assert not {ids["orphan_snap"], ids["loose_snap"]} & after["snapshots"]
    assert {ids["their_group"], ids["packer_group_used"]} <= after["groups"]
    assert ids["packer_group"] not in after["groups"]
    assert after["keys"] == {"someones-key"}
    assert not (home.sandbox_dir / "instances" / "i-0123456789abcdef0").exists()

    again = _janitor(home)
    assert again["findings"] == [], again


def test_janitor_outside_the_sandbox_regions_and_text(home: Home, seeded: dict[str, str]) -> None:
    done = _janitor(home, "--region", "us-east-2")  # nothing in the cloud there; the local disk is everywhere
    assert [(f["kind"], f["region"]) for f in done["findings"]] == [("instance disk", "")]
    assert [r["region"] for r in done["regions"]] == ["us-east-2"]
    text = run_cli(home, "janitor", "--region", REGION)
    assert seeded["packer_group"] in text.stdout and "remove them with: invoke janitor --delete" in text.stdout
    assert "costing $" in text.stdout
    bad = run_cli(home, "janitor", "--region", "mars-1")
    assert bad.returncode == 1 and "unknown region 'mars-1'" in bad.stderr

    ec2 = _ec2(home)
    before = _exists(ec2)
    code, err = _on_a_terminal(home, ["janitor", "--region", REGION, "--delete"], answer="n\n")
    assert code == 1 and "remove these 6 thing(s)?" in err and "error: nothing removed" in err, err
    assert _exists(ec2) == before and seeded["packer_group"] in before["groups"]


def _on_a_terminal(home: Home, args: list[str], answer: str) -> tuple[int, str]:
    """The CLI with a terminal as its stdin (a pty), given `answer`; its exit code and stderr."""
    main, tty = pty.openpty()
    argv = [sys.executable, "-c", "from imagefactory.main import program; program.run()", *args]
    proc = subprocess.Popen(argv, cwd=home.root, env=cli_env(home), stdin=tty, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    os.close(tty)
    os.write(main, answer.encode())
    _, err = proc.communicate(timeout=120)
    os.close(main)
    return proc.returncode, err


@dataclass(frozen=True)
class OneRegionDown(Target):
    """The sandbox target, except that one region's endpoint does not answer (a real client, a closed port)."""

    down: str = ""

    def client(self, service: str, region: str) -> Any:
        if region != self.down:
            return super().client(service, region)
        from botocore.config import Config

        return boto3.client(service, region_name=region, endpoint_url="http://127.0.0.1:9",
                            aws_access_key_id="x", aws_secret_access_key="x",
                            config=Config(connect_timeout=1, retries={"max_attempts": 1}))


def test_a_region_that_fails_is_reported_and_the_others_go_on(home: Home, seeded: dict[str, str]) -> None:
    from imagefactory.janitor_run import run

    info = ensure_up(home.emulator_dir)
    target = OneRegionDown("sandbox", "123456789012", info.endpoint, dict(sandbox_credentials()), down="eu-west-1")
    result = run(home, target, regions=("eu-west-1", REGION), delete=True, progress=lambda line: None)
    errors = {r["region"]: r["error"] for r in result.data["regions"]}
    assert errors[REGION] is None and "EndpointConnectionError" in (errors["eu-west-1"] or "")
    assert seeded["packer_group"] in {f["id"] for f in result.data["findings"]}
    assert result.data["failed"] == [] and len(result.data["removed"]) == 5  # the local disk is not judged:
    assert (home.sandbox_dir / "instances" / "i-0123456789abcdef0").is_dir()  # a region did not answer
    warnings = [m.text for m in result.messages if m.kind == "warning"]
    assert any(w.startswith("eu-west-1 could not be read") for w in warnings), warnings
    assert any(w.startswith("sandbox instance disks were not checked") for w in warnings), warnings


def test_on_aws_what_is_younger_than_an_hour_is_kept(home: Home, seeded: dict[str, str]) -> None:
    """The AWS code path (AWS_ENDPOINT_URL points it at the emulator): what was made just now may still be a
    bake's on another machine, so it is kept; the Packer group whose name says 2020 is not."""
    info = ensure_up(home.emulator_dir)
    env = {**sandbox_credentials(), "AWS_ENDPOINT_URL": info.endpoint, "AWS_REGION": "us-east-1"}
    ec2 = _ec2(home)
    before = _exists(ec2)
    done = run_cli(home, "janitor", "--region", REGION, "--delete", "--yes", "--json", **env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["target"] == "aws" and [f["id"] for f in data["findings"]] == [seeded["packer_group"]]
    assert data["findings"][0]["age_seconds"] > 5 * 365 * 24 * 3600 and data["failed"] == []
    kept = {k["id"]: k["reason"] for k in data["kept"]}
    young = "younger than 1 h (a bake may still be using it)"
    assert {kept[seeded[k]] for k in ("build_instance", "orphan_ami", "loose_snap", "packer_key")} == {young}
    before["groups"].discard(seeded["packer_group"])
    assert _exists(ec2) == before

"""Sharing an image with a class, end to end in the sandbox: one API-only bake, real boto3 against the real
emulator, students reached by assuming a role into their accounts. Never a mock."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from conftest import commit_repo, new_home, packed_build, run_cli, sandbox_client, stop_emulator

from imagefactory import catalog
from imagefactory.classes import aws
from imagefactory.classes import roster as rosters
from imagefactory.classes.share import converge
from imagefactory.cloud.target import open_target
from imagefactory.errors import ClassError
from imagefactory.home import Home
from imagefactory.sandbox.org import (
    CLASS_KEY_ALIAS,
    ORG_ID,
    OTHER_MEMBER,
    OU_ARN,
    OUTSIDER,
    STUDENTS,
    key_arn,
    role_arn,
)

REGIONS = ("us-west-2", "us-east-2")
LABEL = "Ada Lovelace <ada@example.org>"


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Home, str]]:
    """A home with one API-only sandbox bake of a tiny repo in us-west-2."""
    root = tmp_path_factory.mktemp("classes")
    repo = commit_repo(root / "repos" / "hydro", {"requirements.txt": "six==1.16.0\n", "a.py": "print(1)\n"})
    h = new_home(root / "home")
    run_cli(h, "bake", "--api-only", "--repo", repo.as_uri(), "--regions", "us-west-2", check=True)
    yield h, "hydro"
    stop_emulator(h)


def write_roster(h: Home, accounts: list[dict[str, str]], *, key: str | None, name: str = "hydro-101",
                 regions: tuple[str, ...] = REGIONS) -> rosters.Roster:
    doc = rosters.new_document(title="Hydrology 101", regions=regions, accounts=accounts, start=date(2026, 1, 12),
                               end=date(2026, 3, 20), kms_key=key)
    return rosters.write_new(h.root, name, doc, force=True)


def student(h: Home, account: str, region: str) -> Any:
    target = open_target("sandbox", h.emulator_dir)
    got = target.client("sts", region).assume_role(RoleArn=role_arn(account), RoleSessionName="student")["Credentials"]
    return boto3.client("ec2", region_name=region, endpoint_url=target.endpoint,
                        aws_access_key_id=got["AccessKeyId"], aws_secret_access_key=got["SecretAccessKey"],
                        aws_session_token=got["SessionToken"])


def launch_state(h: Home, account: str, region: str, ami: str) -> str:
    """'running', 'terminated' (launched but the key is unusable), or the error code AWS answers."""
    ec2 = student(h, account, region)
    try:
        got = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro")
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    instance_id = got["Instances"][0]["InstanceId"]
    return str(ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"])


def share(h: Home, r: rosters.Roster, **kwargs: Any) -> Any:
    return converge(open_target("sandbox", h.emulator_dir), h.catalog_path("sandbox"), "hydro", r, **kwargs)


def test_share_converges_and_students_launch(baked: tuple[Home, str]) -> None:
    h, _name = baked
    build = catalog.load(h.catalog_path("sandbox")).image("hydro").latest_build()
    assert build is not None
    own_ami = build.amis["us-west-2"]
    owner = open_target("sandbox", h.emulator_dir).client("ec2", "us-west-2")
    two = [{"id": STUDENTS[0], "label": LABEL}, {"id": STUDENTS[1]}]

    # the bake's AMI is on aws/ebs: refused before any change, in one line with the fix
    r = write_roster(h, two, key=None)
    with pytest.raises(ClassError) as err:
        share(h, r)
    assert "encrypted with the AWS-managed key aws/ebs" in str(err.value) and "kms_key" in str(err.value)
    assert owner.describe_image_attribute(ImageId=own_ami, Attribute="launchPermission")["LaunchPermissions"] == []

    # with the class key: the dry run changes nothing
    r = write_roster(h, two, key=CLASS_KEY_ALIAS)
    dry = share(h, r, dry_run=True)
    assert [o.status for o in dry.regions] == ["planned", "planned"] and not dry.failed
    assert owner.describe_images(Owners=["self"], Filters=[{"Name": "tag:imagefactory:class",
                                                            "Values": ["hydro-101"]}])["Images"] == []

    # the real run: a copy per class region on the class key, tags carried over, students launch
    done = share(h, r)
    assert [(o.status, o.copied, o.added) for o in done.regions] == [("changed", True, 2), ("changed", True, 2)]
    copies = {o.region: o.ami for o in done.regions}
    east = open_target("sandbox", h.emulator_dir).client("ec2", "us-east-2")
    img = east.describe_images(ImageIds=[copies["us-east-2"]])["Images"][0]
    tags = {t["Key"]: t["Value"] for t in img["Tags"]}
    assert tags["imagefactory:build-id"] == build.id and tags["imagefactory:class"] == "hydro-101"
    assert img["BlockDeviceMappings"][0]["Ebs"]["KmsKeyId"] == key_arn("us-east-2", CLASS_KEY_ALIAS)
    for region in REGIONS:
        assert launch_state(h, STUDENTS[0], region, copies[region]) == "running"
        assert launch_state(h, STUDENTS[1], region, copies[region]) == "running"
        assert launch_state(h, STUDENTS[2], region, copies[region]) == "InvalidAMIID.NotFound"
    assert launch_state(h, STUDENTS[0], "us-west-2", own_ami) == "InvalidAMIID.NotFound"

    # the record: per region, counts and who shared, never a label nor an account id
    text = h.catalog_path("sandbox").read_text()
    assert "Ada" not in text and STUDENTS[0] not in text
    shares = catalog.load(h.catalog_path("sandbox")).image("hydro").latest_build().shares  # type: ignore[union-attr]
    assert sorted((s["region"], s["ami"], s["accounts"], s["copied"]) for s in shares) == sorted(
        (region, copies[region], 2, True) for region in REGIONS)
    assert all(s["by"].startswith("arn:aws:") for s in shares)

    # a second run changes nothing and says so
    again = share(h, r)
    assert [(o.status, o.writes, o.added, o.removed) for o in again.regions] == [("unchanged", 0, 0, 0)] * 2
    assert "nothing to change" in again.text()

    # a removed student loses access on the next run (launch permission and key grant)
    r = write_roster(h, two[:1], key=CLASS_KEY_ALIAS)
    fewer = share(h, r)
    assert [(o.removed, o.grants_revoked) for o in fewer.regions] == [(1, 1), (1, 1)]
    assert launch_state(h, STUDENTS[1], "us-east-2", copies["us-east-2"]) == "InvalidAMIID.NotFound"
    assert launch_state(h, STUDENTS[0], "us-east-2", copies["us-east-2"]) == "running"

    # a region that fails does not stop the others, and re-running converges
    east.modify_image_attribute(ImageId=copies["us-east-2"], LaunchPermission={"Add": [{"Group": "all"}]})
    r = write_roster(h, [*two[:1], {"id": OUTSIDER}], key=CLASS_KEY_ALIAS)
    mixed = {o.region: o for o in share(h, r).regions}
    assert mixed["us-east-2"].status == "failed" and "is public" in (mixed["us-east-2"].error or "")
    assert mixed["us-west-2"].status == "changed"
    assert launch_state(h, OUTSIDER, "us-west-2", copies["us-west-2"]) == "running"
    east.modify_image_attribute(ImageId=copies["us-east-2"], LaunchPermission={"Remove": [{"Group": "all"}]})
    healed = {o.region: o for o in share(h, r).regions}
    assert healed["us-east-2"].status == "changed" and healed["us-west-2"].status == "unchanged"

    # a region dropped from the roster is unshared there (the class's copy too), kept elsewhere
    r = write_roster(h, [*two[:1], {"id": OUTSIDER}], key=CLASS_KEY_ALIAS, regions=("us-west-2",))
    narrowed = {o.region: o for o in share(h, r).regions}
    assert narrowed["us-east-2"].status == "changed" and narrowed["us-west-2"].status == "unchanged"
    assert east.describe_images(Owners=["self"], ImageIds=[copies["us-east-2"]])["Images"] == []
    build_now = catalog.load(h.catalog_path("sandbox")).image("hydro").latest_build()
    assert build_now is not None and sorted(s["region"] for s in build_now.shares if s["class"] == "hydro-101") == [
        "us-west-2"]

    # unshare removes exactly what the class added: its copies, permissions and grants
    gone = converge(open_target("sandbox", h.emulator_dir), h.catalog_path("sandbox"), "hydro", r, unshare=True)
    assert not gone.failed
    for region in REGIONS:
        assert launch_state(h, STUDENTS[0], region, copies[region]) == "InvalidAMIID.NotFound"
    kms = open_target("sandbox", h.emulator_dir).client("kms", "us-west-2")
    assert kms.list_grants(KeyId=key_arn("us-west-2", CLASS_KEY_ALIAS))["Grants"] == []
    assert catalog.load(h.catalog_path("sandbox")).image("hydro").latest_build().shares == ()  # type: ignore[union-attr]


def test_the_class_commands_through_the_cli(baked: tuple[Home, str]) -> None:
    h, _name = baked
    csv_file = h.root / "students.csv"
    csv_file.write_text(f"id,label\n{STUDENTS[2]},{LABEL}\n{OUTSIDER},Bob\n")
    start = date.today() + timedelta(days=7)
    made = run_cli(h, "class.new", "cli-class", "--accounts-file", str(csv_file), "--regions", "us-west-2",
                   "--start", start.isoformat(), "--weeks", "10", check=True)
    assert "wrote" in made.stdout and "2 accounts" in made.stdout
    assert (h.root / "classes" / "cli-class.yaml").read_text().count(LABEL) == 1

    refused = run_cli(h, "share", "hydro", "--class", "cli-class")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith("error: hydro: ")
    assert "aws/ebs" in refused.stderr and "set kms_key" in refused.stderr

    path = h.root / "classes" / "cli-class.yaml"
    path.write_text(path.read_text() + f"kms_key: {CLASS_KEY_ALIAS}\n")
    dry = json.loads(run_cli(h, "share", "hydro", "--class", "cli-class", "--dry-run", "--json", check=True).stdout)
    assert dry["dry_run"] and dry["changed"] and dry["regions"][0]["status"] == "planned"
    first = json.loads(run_cli(h, "share", "hydro", "--class", "cli-class", "--json", check=True).stdout)
    ami = first["regions"][0]["ami"]
    assert first["regions"][0]["status"] == "changed" and first["regions"][0]["added"] == 2
    again = run_cli(h, "share", "hydro", "--class", "cli-class", check=True)
    assert "nothing to change" in again.stdout

    status = json.loads(run_cli(h, "class.status", "cli-class", "--json", check=True).stdout)
    assert {(e["who"], e["can_launch"]) for e in status["entries"]} == {(STUDENTS[2], True), (OUTSIDER, True)}
    assert launch_state(h, STUDENTS[2], "us-west-2", ami) == "running"

    early = run_cli(h, "class.end", "cli-class")
    assert early.returncode == 1 and f"term ends on {start + timedelta(weeks=10)}" in early.stderr
    ended = run_cli(h, "class.end", "cli-class", "--force", check=True)
    assert "us-west-2" in ended.stdout
    assert launch_state(h, STUDENTS[2], "us-west-2", ami) == "InvalidAMIID.NotFound"
    after = json.loads(run_cli(h, "class.status", "cli-class", "--json", check=True).stdout)
    assert after["entries"] == []
    for out in (made, refused, again, ended):
        assert "Ada" not in out.stdout + out.stderr
    assert "Ada" not in h.catalog_path("sandbox").read_text()


ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=1100,1400")


def test_the_handout_renders_in_chromium_and_matches_the_catalog(baked: tuple[Home, str], tmp_path: Path) -> None:
    h, _name = baked
    assert CHROMIUM is not None, "chromium is not installed: scripts/bootstrap installs it"
    write_roster(h, [{"id": STUDENTS[0], "label": LABEL}], key=CLASS_KEY_ALIAS, name="handout-class")
    run_cli(h, "share", "hydro", "--class", "handout-class", check=True)
    done = json.loads(run_cli(h, "handout", "hydro", "--class", "handout-class", "--json", check=True).stdout)
    page, readme = Path(done["html"]), Path(done["readme"])
    assert page == h.root / "handouts" / "handout-class" / "index.html"
    build = catalog.load(h.catalog_path("sandbox")).image("hydro").latest_build()
    assert build is not None
    recorded = {s["region"]: s["ami"] for s in build.shares if s["class"] == "handout-class"}
    assert done["amis"] == recorded and sorted(recorded) == sorted(REGIONS)

    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'dom'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shown = re.findall(r'<td class="ami">(ami-[0-9a-f]+)</td>', dom.stdout)
    links = re.findall(r'<a class="launch" href="([^"]+)"', dom.stdout)
    assert sorted(shown) == sorted(recorded.values())
    assert sorted(links) == sorted(f"https://{r}.console.aws.amazon.com/ec2/home?region={r}#LaunchInstances:"
                                   f"ami={a}" for r, a in recorded.items())
    assert set(re.findall(r"ami-[0-9a-f]+", dom.stdout)) == set(recorded.values())
    for region, ami in recorded.items():
        assert f"--image-id {ami} --instance-type t3.large" in dom.stdout and f"--region {region}" in dom.stdout
        command = f"imagefactory launch --ami {ami} --region {region} --type t3.large --autostop 60"
        assert f"<pre>{command}</pre>" in dom.stdout and f"    {command}\n" in readme.read_text()
    assert "The image only exists in us-east-2, us-west-2" in dom.stdout
    for text in (dom.stdout, readme.read_text()):
        assert "Ada" not in text and LABEL not in text and STUDENTS[0] not in text
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "class-handout.png"
    shot.unlink(missing_ok=True)
    taken = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'shot'}", f"--screenshot={shot}",
                            page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert taken.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_an_ou_class_gets_the_key_policy_statement_that_lets_its_accounts_launch(baked: tuple[Home, str]) -> None:
    h, _name = baked
    doc = rosters.new_document(title="OU class", regions=("us-west-2",), accounts=[], start=date(2026, 1, 12),
                               end=date(2026, 3, 20), ous=(OU_ARN,), kms_key=CLASS_KEY_ALIAS)
    r = rosters.write_new(h.root, "ou-class", doc, force=True)
    done = share(h, r)
    ami = done.regions[0].ami
    assert done.regions[0].status == "changed" and done.regions[0].added == 1
    note = next(n for n in done.notes if "key-policy statement" in n)
    statement = json.loads(note.split("(grants cannot name them): ", 1)[1])
    assert statement["Condition"]["ForAnyValue:StringLike"]["aws:PrincipalOrgPaths"] == [
        f"{ORG_ID}/*/{OU_ARN.rpartition('/')[2]}/*"]
    assert launch_state(h, STUDENTS[2], "us-west-2", ami) == "terminated"  # shared, but the key is not usable yet
    assert launch_state(h, OTHER_MEMBER, "us-west-2", ami) == "InvalidAMIID.NotFound"
    kms = open_target("sandbox", h.emulator_dir).client("kms", "us-west-2")
    key = key_arn("us-west-2", CLASS_KEY_ALIAS)
    policy = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    policy["Statement"].append(statement)
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(policy))
    assert launch_state(h, STUDENTS[2], "us-west-2", ami) == "running"
    assert launch_state(h, OTHER_MEMBER, "us-west-2", ami) == "InvalidAMIID.NotFound"
    shown = json.loads(run_cli(h, "catalog.show", "hydro", "--json", check=True).stdout)
    recorded = [s for b in shown["sandbox"]["builds"] for s in b.get("shares", []) if s["class"] == "ou-class"]
    assert [(s["ami"], s["accounts"], s["ous"]) for s in recorded] == [(ami, 0, [OU_ARN])]


def test_independent_calls_of_a_region_run_at_once_and_a_failure_is_raised_once_all_ended() -> None:
    together = threading.Barrier(aws.IN_REGION_WORKERS, timeout=30)  # broken unless all wait at the same time
    assert aws.at_once([partial(lambda i: (together.wait(), i)[1], i) for i in range(aws.IN_REGION_WORKERS)]) == [
        0, 1, 2, 3]
    here = threading.get_ident()
    assert aws.at_once([threading.get_ident, threading.get_ident], workers=1) == [here, here]  # one after the other
    ended: list[str] = []

    def fails() -> None:
        raise ValueError("AccessDenied")

    def slow() -> None:
        time.sleep(0.2)
        ended.append("slow")

    with pytest.raises(ValueError, match="AccessDenied"):
        aws.at_once([fails, slow])
    assert ended == ["slow"]


STUDENT_CIDR = "198.51.100.9/32"


def student_env(folder: Path, endpoint: str, creds: dict[str, str]) -> dict[str, str]:
    """A student's environment: no factory home, their own credentials, AWS_ENDPOINT_URL at the emulator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMAGEFACTORY_"))}
    return {**env, "HOME": str(folder), "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-west-2", **creds}


def student_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", "from imagefactory.main import program; program.run()", *args]


def student_cli(folder: Path, endpoint: str, creds: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI run by a student, from an empty folder (see `student_env`)."""
    return subprocess.run(student_argv(*args), cwd=folder, env=student_env(folder, endpoint, creds), text=True,
                          capture_output=True, timeout=600, check=False)


def assumed(h: Home, account: str) -> dict[str, str]:
    target = open_target("sandbox", h.emulator_dir)
    got = target.client("sts", "us-west-2").assume_role(RoleArn=role_arn(account),
                                                        RoleSessionName="student")["Credentials"]
    return {"AWS_ACCESS_KEY_ID": got["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": got["SecretAccessKey"],
            "AWS_SESSION_TOKEN": got["SessionToken"]}


def student_instances(endpoint: str, creds: dict[str, str]) -> list[dict[str, Any]]:
    ec2 = sandbox_client(endpoint, creds=creds)
    return [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]


def test_a_student_with_no_factory_home_reaches_the_sandbox_and_is_refused_what_it_cannot_run(
        baked: tuple[Home, str], tmp_path: Path) -> None:
    h, _name = baked
    build = catalog.load(h.catalog_path("sandbox")).image("hydro").latest_build()
    assert build is not None
    write_roster(h, [{"id": STUDENTS[0], "label": LABEL}], key=CLASS_KEY_ALIAS, name="student-class",
                 regions=("us-west-2",))
    shared = json.loads(run_cli(h, "share", "hydro", "--class", "student-class", "--json", check=True).stdout)
    ami = shared["regions"][0]["ami"]
    endpoint = open_target("sandbox", h.emulator_dir).endpoint
    assert endpoint is not None
    folder = tmp_path / "student"
    folder.mkdir()

    # an account the class does not name: AWS's answer in one line, nothing made
    outsider = student_cli(folder, endpoint, assumed(h, OUTSIDER), "launch", "--ami", ami, "--region", "us-west-2",
                           "--cidr", STUDENT_CIDR, "--no-wait")
    assert outsider.returncode == 1 and "Traceback" not in outsider.stderr
    assert outsider.stderr.strip().splitlines()[-1] == (
        f"error: AMI {ami} is not in us-west-2 for account {OUTSIDER} (check --region (an AMI exists only where it "
        "was built or copied), or ask whoever shared it to share it with your account)")
    assert not (folder / ".ssh").exists()

    # the student, in the sandbox as their own account: the class's copy holds the API-only build (the emulator
    # follows the copy to it; the student sees none of its tags), which has no root filesystem to run
    creds = assumed(h, STUDENTS[0])
    before = student_instances(endpoint, creds)  # what the tests above launched as this student
    done = student_cli(folder, endpoint, creds, "launch", "--ami", ami, "--region", "us-west-2", "--no-wait")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[0] == (f"SANDBOX: AWS_ENDPOINT_URL is the local EC2 emulator at {endpoint}; "
                                          f"acting as account {STUDENTS[0]}, instances run on this machine. "
                                          "Nothing here touches AWS.")
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: build {build.id} has no packed root filesystem")
    assert student_instances(endpoint, creds) == before and not (folder / ".ssh").exists()

    by_name = student_cli(folder, endpoint, creds, "launch", "hydro", "--region", "us-west-2")
    assert by_name.returncode == 1 and by_name.stderr.strip().splitlines()[-1].startswith("error: no factory home")
    assert "or launch an AMI you were given: imagefactory launch --ami AMI_ID --region R)" in by_name.stderr
    assert run_cli(h, "unshare", "hydro", "--class", "student-class").returncode == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.network  # the lab is a provisioned bake (packages from the index)
def test_a_student_launches_the_shared_lab_and_connects_through_the_tunnel(example_home: Home,
                                                                          tmp_path: Path) -> None:
    """The class's copy of a provisioned bake, launched by a student's account with no home and no catalog:
    the same launch as the owner's, the local instance booted from the build the copy came from."""
    from imagefactory.sandbox import instances as local

    h = example_home
    build_id = packed_build(h)
    own = catalog.load(h.catalog_path("sandbox")).image("hello-binder").build(build_id)
    assert own is not None
    write_roster(h, [{"id": STUDENTS[0], "label": LABEL}], key=CLASS_KEY_ALIAS, name="lab-class",
                 regions=("us-west-2",))
    shared = json.loads(run_cli(h, "share", "hello-binder", "--class", "lab-class", "--build", build_id, "--json",
                                check=True).stdout)["regions"][0]
    ami = shared["ami"]
    assert shared["copied"] and ami != own.amis["us-west-2"]
    endpoint = open_target("sandbox", h.emulator_dir).endpoint
    assert endpoint is not None
    folder = tmp_path / "student"
    folder.mkdir()
    creds, iid = assumed(h, STUDENTS[0]), ""
    try:
        refused = student_cli(folder, endpoint, assumed(h, OUTSIDER), "launch", "--ami", ami, "--region", "us-west-2")
        assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1].startswith(
            f"error: AMI {ami} is not in us-west-2 for account {OUTSIDER} ")

        done = student_cli(folder, endpoint, creds, "launch", "--ami", ami, "--region", "us-west-2", "--json")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        iid = result["instance_id"]
        assert (result["target"], result["host"], result["ami"], result["cidr"]) == ("sandbox", "127.0.0.1", ami,
                                                                                      "127.0.0.1/32")
        assert any("a shared image shows none to other accounts" in n for n in result["notes"])
        pem = Path(result["key_path"])
        assert pem.parent == folder / ".ssh" and stat.S_IMODE(pem.stat().st_mode) == 0o400
        (inst,) = student_instances(endpoint, creds)
        assert (inst["InstanceId"], inst["ImageId"], inst["State"]["Name"]) == (iid, ami, "running")
        assert inst["MetadataOptions"]["HttpTokens"] == "required"
        ec2 = sandbox_client(endpoint, creds=creds)
        volume = ec2.describe_volumes(VolumeIds=[inst["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]])["Volumes"][0]
        assert volume["Encrypted"] is True
        shutdown = ec2.describe_instance_attribute(InstanceId=iid, Attribute="instanceInitiatedShutdownBehavior")
        assert shutdown["InstanceInitiatedShutdownBehavior"]["Value"] == "stop"
        data = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"]["Value"]
        assert 'content: "60\\n"' in base64.b64decode(data).decode()
        (group,) = ec2.describe_security_groups(GroupIds=[g["GroupId"] for g in inst["SecurityGroups"]])[
            "SecurityGroups"]
        assert [r["CidrIp"] for p in group["IpPermissions"] for r in p["IpRanges"]] == ["127.0.0.1/32"]
        assert "PRIVATE KEY" not in done.stdout + done.stderr
        assert local.load(h, iid) is not None  # booted by the emulator's home's data plane, from the owner's build

        port = free_port()
        connect = subprocess.Popen(student_argv("connect", iid, "--region", "us-west-2", "--local-port", str(port)),
                                   cwd=folder, env=student_env(folder, endpoint, creds), text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        watchdog = threading.Timer(240, connect.kill)
        watchdog.start()
        try:
            assert connect.stdout is not None
            url = connect.stdout.readline().strip()
            assert url.startswith(f"http://localhost:{port}/lab?token="), connect.stderr and connect.stderr.read()
            token = url.partition("token=")[2]
            status = requests.get(f"http://127.0.0.1:{port}/api/status", headers={"Authorization": f"token {token}"},
                                  timeout=30, proxies={"http": "", "https": ""})
            assert status.status_code == 200 and "started" in status.json()
            assert requests.get(f"http://127.0.0.1:{port}/api/status", timeout=30,
                                proxies={"http": "", "https": ""}).status_code == 403
        finally:
            connect.send_signal(signal.SIGINT)
            code = connect.wait(timeout=60)
            watchdog.cancel()
            err = connect.stderr.read() if connect.stderr else ""
            for stream in (connect.stdout, connect.stderr):
                if stream:
                    stream.close()
        assert code == 0, err
        assert token not in err + done.stdout + done.stderr

        gone = student_cli(folder, endpoint, creds, "terminate", iid, "--region", "us-west-2", "--yes", "--json")
        assert gone.returncode == 0, gone.stderr
        assert json.loads(gone.stdout)["state"] in ("shutting-down", "terminated")
        assert local.load(h, iid) is None and not (local.instances_dir(h) / iid).exists()
        iid = ""
    finally:
        if iid:
            local.remove(h, iid)
        assert run_cli(h, "unshare", "hello-binder", "--class", "lab-class", "--build", build_id).returncode == 0


def test_without_a_home_or_credentials_launch_says_what_the_sandbox_needs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMAGEFACTORY_"))}
    env["HOME"] = str(tmp_path)
    argv = [sys.executable, "-c", "from imagefactory.main import program; program.run()",
            "launch", "--ami", "ami-0123456789abcdef0", "--region", "us-west-2"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, text=True, capture_output=True, timeout=120, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: no factory home here: no catalog.yaml in {tmp_path} or above")
    assert "the sandbox's emulator lives in a home, and no AWS credentials are configured" in line
    assert line.endswith("or set IMAGEFACTORY_HOME; or configure AWS credentials (aws configure) to launch an AMI "
                         "you were given)")


def test_a_bake_with_image_kms_key_is_shared_without_a_copy(tmp_path: Path) -> None:
    repo = commit_repo(tmp_path / "repos" / "keyed", {"requirements.txt": "six==1.16.0\n"})
    h = new_home(tmp_path / "home")
    try:
        run_cli(h, "recipe", "--repo", repo.as_uri(), check=True)
        path = h.recipe_path("keyed")
        path.write_text(path.read_text().replace("image:\n", f"image:\n  kms_key: {CLASS_KEY_ALIAS}\n", 1))
        run_cli(h, "bake", "--api-only", "--repo", repo.as_uri(), "--regions", ",".join(REGIONS), check=True)
        build = catalog.load(h.catalog_path("sandbox")).image("keyed").latest_build()
        assert build is not None and sorted(build.amis) == sorted(REGIONS)
        target = open_target("sandbox", h.emulator_dir)
        for region, ami in build.amis.items():  # Packer's kms_key_id / region_kms_key_ids, as AWS records them
            ec2 = target.client("ec2", region)
            img = ec2.describe_images(ImageIds=[ami])["Images"][0]
            snap = ec2.describe_snapshots(SnapshotIds=[img["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]])
            assert snap["Snapshots"][0]["Encrypted"] is True
            assert snap["Snapshots"][0]["KmsKeyId"] == key_arn(region, CLASS_KEY_ALIAS)
        doc = rosters.new_document(title="Keyed", regions=REGIONS, accounts=[{"id": STUDENTS[0]}],
                                   start=date(2026, 1, 12), end=date(2026, 3, 20), kms_key=CLASS_KEY_ALIAS)
        rosters.write_new(h.root, "keyed-class", doc, force=True)
        done = json.loads(run_cli(h, "share", "keyed", "--class", "keyed-class", "--json", check=True).stdout)
        assert [(r["region"], r["ami"], r["copied"], r["on_class_key"], r["status"]) for r in done["regions"]] == [
            (region, build.amis[region], False, True, "changed") for region in REGIONS]
        assert any("already encrypted with the class key" in n and "no copy made" in n for n in done["notes"])
        for region in REGIONS:
            assert target.client("ec2", region).describe_images(Owners=["self"], Filters=[
                {"Name": "tag:imagefactory:class", "Values": ["keyed-class"]}])["Images"] == []
            assert launch_state(h, STUDENTS[0], region, build.amis[region]) == "running"
    finally:
        stop_emulator(h)

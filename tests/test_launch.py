"""launch / connect / instances / stop / start / terminate through the real CLI.

Two halves. The AWS code path runs against the emulator: the CLI sees credentials and an
AWS_ENDPOINT_URL pointing at the emulator, so it takes the real-AWS branch (STS, Pricing API, key pairs,
security groups, run_instances); `--no-wait` keeps it from waiting for ssh on the emulator's made-up
public addresses (nothing here ever sends a packet off this machine). The sandbox half bakes the bundled
example, launches it as a local instance and goes through a real ssh tunnel to its real JupyterLab.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
import websocket
from conftest import cli_env, interrupt_at, new_home, packed_build, run_cli, stop_emulator
from jupyter_client.session import Session

from imagefactory import catalog
from imagefactory.catalog import Build
from imagefactory.home import Home
from imagefactory.sandbox.emulator import ensure_up, sandbox_credentials
from imagefactory.sandbox.leftovers import sandbox_processes
from imagefactory.sandbox.teardown import processes_in

BUILD_ID = "20261127-120000-beef"
TASKS = ("launch", "connect", "instances", "stop", "start", "terminate")
CIDR = "198.51.100.7/32"


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", "from imagefactory.main import program; program.run()", *args]


def cli(h: Home, *args: str, check: bool = False, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, as a user runs it."""
    return run_cli(h, *args, check=check, timeout=timeout, **env)


def last_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "Traceback" not in done.stderr
    return line


# ---- the AWS code path, against the emulator ------------------------------------------------------

class AwsHome:
    def __init__(self, home: Home, endpoint: str) -> None:
        self.home = home
        self.endpoint = endpoint
        self.env = {**sandbox_credentials(), "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1"}

    def ec2(self, region: str) -> Any:
        return boto3.client("ec2", region_name=region, endpoint_url=self.endpoint, **_creds())

    def cli(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return cli(self.home, *args, **self.env, **extra)


def _creds() -> dict[str, str]:
    c = sandbox_credentials()
    return {"aws_access_key_id": c["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": c["AWS_SECRET_ACCESS_KEY"]}


@pytest.fixture
def aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsHome]:
    """A home whose real catalog.yaml holds image 'demo' with AMIs (in the emulator) in two regions."""
    monkeypatch.setenv("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")  # the emulator inherits it
    home = new_home(tmp_path / "home")
    info = ensure_up(home.emulator_dir)
    try:
        env = AwsHome(home, info.endpoint)
        amis = {region: _register(env.ec2(region)) for region in ("us-west-2", "us-east-2")}
        build = Build(id=BUILD_ID, created="2026-11-27T12:00:00Z", status="available", target="aws",
                      account="123456789012", commit="0" * 40, ref="main", recipe_digest="sha256:x", amis=amis)
        catalog.update(home.catalog_path("aws"), lambda c: catalog.record(
            c, name="demo", repo="https://example.org/demo.git", recipe="recipes/demo.yaml",
            recipe_digest="sha256:x", build=build))
        yield env
    finally:
        stop_emulator(home)


def _register(ec2: Any) -> str:
    base = ec2.describe_images(Owners=["099720109477"])["Images"][0]
    snapshot = base["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    ami = ec2.register_image(Name=f"imagefactory/demo/{BUILD_ID}", RootDeviceName="/dev/sda1",
                             BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": snapshot}}])
    ec2.create_tags(Resources=[ami["ImageId"]], Tags=[{"Key": "imagefactory:build-id", "Value": BUILD_ID}])
    return ami["ImageId"]


def live(aws: AwsHome, region: str) -> list[dict[str, Any]]:
    reservations = aws.ec2(region).describe_instances(Filters=[
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def test_launch_applies_the_security_defaults_and_prints_how_to_get_in(aws: AwsHome) -> None:
    done = aws.cli("launch", "demo", "--cidr", CIDR, "--no-wait", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["region"] == "us-west-2" and result["target"] == "aws" and result["build_id"] == BUILD_ID
    pem = Path(result["key_path"])
    assert pem == aws.home.root / ".ssh" / "imagefactory-us-west-2.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o400
    assert "PRIVATE KEY" not in done.stdout + done.stderr and pem.read_text() not in done.stdout
    assert result["tunnel_command"] == f"ssh -i {pem} -N -L 7005:localhost:8889 ubuntu@{result['host']}"
    assert result["price"]["on_demand"] == 0.0416 and "bundled table" in result["price"]["source"]
    ec2 = aws.ec2("us-west-2")
    (inst,) = live(aws, "us-west-2")
    assert inst["InstanceId"] == result["instance_id"] and inst["InstanceType"] == "t3.medium"
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    volume = ec2.describe_volumes(VolumeIds=[inst["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]])["Volumes"][0]
    assert volume["Encrypted"] is True
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags["managed-by"] == "imagefactory" and tags["imagefactory:image"] == "demo"
    assert tags["imagefactory:build-id"] == BUILD_ID and tags["owner"].startswith("arn:aws:")
    assert tags["Name"]
    attr = ec2.describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="instanceInitiatedShutdownBehavior")
    assert attr["InstanceInitiatedShutdownBehavior"]["Value"] == "stop"
    data = ec2.describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="userData")["UserData"]["Value"]
    assert "/etc/imagefactory/autostop-minutes" in base64.b64decode(data).decode()
    assert 'content: "60\\n"' in base64.b64decode(data).decode()
    (group,) = ec2.describe_security_groups(GroupIds=[g["GroupId"] for g in inst["SecurityGroups"]])["SecurityGroups"]
    ranges = [r["CidrIp"] for p in group["IpPermissions"] for r in p["IpRanges"]]
    assert ranges == [CIDR] and group["IpPermissions"][0]["FromPort"] == 22
    text = aws.cli("launch", "demo", "--cidr", CIDR, "--no-wait", "--region", "us-east-2", "--type", "m5.large")
    assert text.returncode == 0, text.stderr
    assert "$0.0960/hour on demand" in text.stdout and "Stop (invoke stop" in text.stdout
    assert "-N -L 7005:localhost:8889 ubuntu@" in text.stdout and "Terminate" in text.stdout


def test_second_launch_reuses_key_and_group_and_lifecycle_works(aws: AwsHome) -> None:
    first = json.loads(aws.cli("launch", "demo", "--cidr", CIDR, "--no-wait", "--json").stdout)
    second = json.loads(aws.cli("launch", "demo", "--cidr", CIDR, "--no-wait", "--json", "--spot",
                                "--autostop", "0", "--volume", "40").stdout)
    assert first["created"] and not second["created"]
    assert (first["key_name"], first["security_group"]) == (second["key_name"], second["security_group"])
    assert second["spot"] and second["price"]["spot"] is not None and second["volume_gb"] == 40
    spot = next(i for i in live(aws, "us-west-2") if i["InstanceId"] == second["instance_id"])
    assert spot["InstanceLifecycle"] == "spot"
    rows = json.loads(aws.cli("instances", "--json").stdout)
    assert {r["id"] for r in rows} == {first["instance_id"], second["instance_id"]}
    assert all(r["state"] == "running" and r["cost_usd"] is not None for r in rows)
    table = aws.cli("instances").stdout
    assert "COST SO FAR" in table and first["instance_id"] in table
    iid = first["instance_id"]
    assert json.loads(aws.cli("stop", iid, "--json").stdout)["state"] in ("stopping", "stopped")
    assert "is stopped" in last_error(aws.cli("connect", iid))  # refused before any ssh
    assert json.loads(aws.cli("start", iid, "--json").stdout)["state"] == "running"
    assert "--yes" in last_error(aws.cli("terminate", iid))  # no terminal to confirm on: refused
    assert json.loads(aws.cli("terminate", iid, "--yes", "--json").stdout)["state"] in ("shutting-down", "terminated")
    assert {r["id"] for r in json.loads(aws.cli("instances", "--json").stdout)} == {second["instance_id"]}
    by_name = aws.cli("stop", "demo", "--json")  # the name picks the one live instance of 'demo'
    assert by_name.returncode == 0, by_name.stderr
    assert json.loads(by_name.stdout)["id"] == second["instance_id"]
    assert json.loads(by_name.stdout)["state"] in ("stopping", "stopped")


@pytest.mark.parametrize(("args", "expected"), [
    (("launch", "nope", "--cidr", CIDR), "no image named 'nope'"),
    (("launch", "demo", "--region", "eu-west-1", "--cidr", CIDR), "it exists in: us-east-2, us-west-2"),
    (("launch", "demo", "--type", "t3.mega", "--cidr", CIDR), "unknown instance type 't3.mega'"),
    (("launch", "demo", "--cidr", "0.0.0.0/0"), "whole internet"),
    (("launch", "demo", "--volume", "1", "--cidr", CIDR), "smaller than the image's"),
    (("stop", "i-0123456789abcdef0"), "no live instance"),
])
def test_bad_input_is_one_line_and_creates_nothing(aws: AwsHome, args: tuple[str, ...], expected: str) -> None:
    assert expected in last_error(aws.cli(*args))
    _assert_nothing_made(aws)


def test_named_key_is_made_once_and_a_cloud_key_without_its_file_is_refused(aws: AwsHome) -> None:
    result = json.loads(aws.cli("launch", "demo", "--cidr", CIDR, "--no-wait", "--json", "--key", "lab-key").stdout)
    pem = aws.home.root / ".ssh" / "lab-key.pem"
    assert result["key_name"] == "lab-key" and result["key_path"] == str(pem)
    assert stat.S_IMODE(pem.stat().st_mode) == 0o400 and "key pair lab-key" in result["created"]
    pem.chmod(0o600)
    pem.unlink()
    error = last_error(aws.cli("launch", "demo", "--cidr", CIDR, "--no-wait", "--key", "lab-key"))
    assert "exists in us-west-2" in error and str(pem) in error
    assert len(live(aws, "us-west-2")) == 1


def test_failed_address_lookup_suggests_cidr(aws: AwsHome) -> None:
    # the lookup goes through a proxy that is a closed port on loopback: it fails at once, on this machine
    error = last_error(aws.cli("launch", "demo", HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="127.0.0.1,localhost"))
    assert "public address" in error and "--cidr" in error
    _assert_nothing_made(aws)


def test_spot_request_the_cloud_rejects_leaves_nothing_behind(aws: AwsHome) -> None:
    # u-*tb1.metal exist (botocore knows them) but are never offered as spot; the emulator rejects the type
    error = last_error(aws.cli("launch", "demo", "--spot", "--type", "u-6tb1.metal", "--cidr", CIDR))
    assert "InvalidInstanceType" in error and "nothing was left running" in error
    _assert_nothing_made(aws)


def _assert_nothing_made(aws: AwsHome) -> None:
    for region in ("us-west-2", "us-east-2"):
        ec2 = aws.ec2(region)
        assert live(aws, region) == []
        assert ec2.describe_key_pairs()["KeyPairs"] == []
        assert [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]] == ["default"]
    assert list((aws.home.root / ".ssh").glob("*.pem")) == []  # (a folder that does not exist holds none)


def test_the_tasks_have_help_for_every_option() -> None:
    out = subprocess.run(cli_argv("--list"), capture_output=True, text=True, check=True, env=dict(os.environ)).stdout
    for name in TASKS:
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(name + " "))
        assert len(line.split()) > 1
    helped = subprocess.run(cli_argv("--help", "launch"), capture_output=True, text=True, check=True).stdout
    for option in ("--region", "--type", "--spot", "--autostop", "--volume", "--key", "--cidr", "--local-port",
                   "--json", "--no-wait"):
        assert option in helped


# ---- the sandbox: a local instance of the baked example, a real tunnel, a real JupyterLab ----------

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hello-binder"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def lab(example_home: Home) -> Iterator[dict[str, Any]]:
    """The example baked in the sandbox and launched as a local instance; removed (and checked) after."""
    from imagefactory.sandbox.host import sandbox_supported

    ok, why = sandbox_supported()
    assert ok, f"the sandbox launch tests need a machine that can run the rootfs: {why}"
    packed_build(example_home)
    started = time.monotonic()
    done = cli(example_home, "launch", "hello-binder", "--sandbox", "--json", "--local-port", str(free_port()))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout) | {"started": started, "output": done.stdout + done.stderr}
    try:
        yield result
    finally:
        _remove_local_instances(example_home)


def _remove_local_instances(h: Home) -> None:
    from imagefactory.sandbox import instances as local

    records = [r.stem for r in (h.sandbox_dir / "instances").glob("i-*.json")]
    if records:  # terminate in the emulator too, so later tests in this home see no live leftovers
        ec2 = boto3.client("ec2", region_name="us-west-2", endpoint_url=_endpoint(h), **_creds())
        ec2.terminate_instances(InstanceIds=records)
    for instance_id in records:
        local.remove(h, instance_id)
    assert sandbox_processes(h) == []
    assert _strays(h) == [], "processes left behind"


def cmdlines() -> Iterator[tuple[int, str]]:
    """(pid, command line) of every process but this one, from /proc."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                yield int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def _strays(h: Home) -> list[str]:
    """Processes (other than the emulator) whose command line names this home: ssh, sshd, jupyter."""
    return [f"{pid}: {cmd[:200]}" for pid, cmd in cmdlines()
            if str(h.root) in cmd and "imagefactory.sandbox.server" not in cmd]


class Connected:
    """`connect` running as a real CLI process; its first stdout line is the lab URL."""

    def __init__(self, h: Home, instance: str, local_port: int) -> None:
        self.process = subprocess.Popen(cli_argv("connect", instance, "--local-port", str(local_port)),
                                        cwd=h.root, env=cli_env(h), text=True, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr = ""
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self.url = self.lines.get(timeout=240).strip()
        except queue.Empty:
            self.close()
            raise AssertionError(f"connect printed no URL: {self.process.stderr.read()}") from None
        self.token = self.url.partition("token=")[2]
        self.base = self.url.partition("/lab")[0].replace("localhost", "127.0.0.1")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def get(self, path: str, token: bool = True) -> Any:
        headers = {"Authorization": f"token {self.token}"} if token else {}
        return requests.get(self.base + path, headers=headers, timeout=30, proxies={"http": "", "https": ""})

    def close(self) -> int:
        """Ctrl-C, as a person would; returns connect's exit code (its stderr is kept in `stderr`)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=30)
            self.stderr = self.process.stderr.read() if self.process.stderr else ""
            return code
        finally:
            for stream in (self.process.stdout, self.process.stderr):
                if stream:
                    stream.close()


def run_cell(c: Connected, kernel: str, code: str) -> str:
    """Start a kernel through the REST API and run `code` over its websocket channels; returns its stdout.

    The messages are jupyter_client's (`Session`), the transport is websocket-client: a Jupyter
    Server's kernels are reached over REST + websocket, which jupyter_client's own (ZMQ) clients do not
    speak."""
    auth = {"Authorization": f"token {c.token}"}
    started = requests.post(c.base + "/api/kernels", json={"name": kernel}, timeout=60, proxies={"http": ""},
                            headers=auth).json()
    session = Session(username="test")
    ws = websocket.create_connection(
        c.base.replace("http://", "ws://") + f"/api/kernels/{started['id']}/channels?session_id={session.session}",
        header=auth, timeout=120, http_proxy_host=None, suppress_origin=True)
    try:
        request = session.msg("execute_request", {"code": code, "silent": False, "store_history": False,
                                                  "user_expressions": {}, "allow_stdin": False,
                                                  "stop_on_error": True})
        ws.send(json.dumps({**request, "channel": "shell", "buffers": []}, default=str))
        out, replied, idle = [], False, False
        while not (replied and idle):  # the shell reply and iopub's idle: both seen (recv times out at 120 s)
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != request["header"]["msg_id"]:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                raise AssertionError(f"the cell failed: {content['ename']}: {content['evalue']}")
            elif kind == "execute_reply":
                assert content["status"] == "ok"
                replied = True
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
    finally:
        ws.close()
        requests.delete(c.base + f"/api/kernels/{started['id']}", headers=auth, timeout=30, proxies={"http": ""})
    return "".join(out)


def listening(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp) listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            address, _, hex_port = fields[1].rpartition(":")
            if int(hex_port, 16) == port and fields[3] == "0A":
                found.add(address)
    return found


def tunnel_processes(local_port: int) -> list[int]:
    return [pid for pid, cmd in cmdlines() if f"127.0.0.1:{local_port}:localhost:" in cmd]


@pytest.mark.network  # the lab is a provisioned bake (packages from the index)
def test_sandbox_down_refuses_while_a_local_instance_runs(lab: dict[str, Any], example_home: Home) -> None:
    done = cli(example_home, "sandbox.down")
    assert done.returncode == 1 and lab["instance_id"] in done.stderr and "--force" in done.stderr
    assert "running" in cli(example_home, "sandbox.status", check=True).stdout


@pytest.mark.network  # the lab is a provisioned bake (packages from the index)
def test_sandbox_launch_connect_run_a_cell_stop_start_terminate(lab: dict[str, Any], example_home: Home) -> None:
    iid, h = lab["instance_id"], example_home
    assert lab["target"] == "sandbox" and lab["host"] == "127.0.0.1" and lab["cidr"] == "127.0.0.1/32"
    pem = Path(lab["key_path"])
    assert pem.name == "imagefactory-sandbox-us-west-2.pem" and stat.S_IMODE(pem.stat().st_mode) == 0o400
    assert listening(lab["jupyter_port"]) == {"0100007F"} and listening(lab["ssh_port"]) == {"0100007F"}
    ec2 = boto3.client("ec2", region_name=lab["region"], endpoint_url=_endpoint(h), **_creds())
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert inst["MetadataOptions"]["HttpTokens"] == "required" and inst["ImageId"] == lab["ami"]
    port = free_port()
    c = Connected(h, iid, port)
    try:
        assert c.get("/api/status").status_code == 200
        reached = time.monotonic() - lab["started"]
        assert c.get("/api/status", token=False).status_code == 403
        specs = c.get("/api/kernelspecs").json()
        assert "hello-binder" in specs["kernelspecs"]
        output = run_cell(c, "hello-binder", "from tabulate import tabulate\nprint(tabulate([[1, 2]]))")
        assert "1  2" in output
    finally:
        assert c.close() == 0
    assert tunnel_processes(port) == [], "the tunnel's ssh outlived Ctrl-C"
    logs = "".join(p.read_text(errors="replace") for p in (h.sandbox_dir / "instances").glob(f"{iid}.*.log"))
    assert c.token and c.token not in logs + lab["output"] + c.stderr, "the token leaked into output or logs"
    _record_timing(reached, lab["seconds"])
    root = h.sandbox_dir / "instances" / iid
    assert json.loads(cli(h, "stop", iid, "--json", check=True).stdout)["state"] in ("stopping", "stopped")
    assert processes_in(root) == [] and (root / "etc/imagefactory/autostop-minutes").read_text() == "60\n"
    assert json.loads(cli(h, "start", iid, "--json", check=True).stdout)["state"] == "running"
    c = Connected(h, iid, port)
    try:
        assert c.get("/api/status").status_code == 200
    finally:
        assert c.close() == 0
    # the emulator restarts with the instance still known: no disk is left that no command can reach
    assert "sandbox emulator stopped" in cli(h, "sandbox.down", "--force", check=True).stdout
    assert sandbox_processes(h) == [] and root.is_dir()
    listed = {r["id"]: r["state"] for r in json.loads(cli(h, "instances", "--json", check=True).stdout)}
    assert listed[iid] == "stopped", "its processes were ended: the emulator says so"
    assert json.loads(cli(h, "terminate", iid, "--yes", "--json", check=True).stdout)["state"] in (
        "shutting-down", "terminated")
    assert not root.exists() and sandbox_processes(h) == []


@pytest.mark.network  # the lab is a provisioned bake (packages from the index)
def test_ctrl_c_during_a_sandbox_launch_removes_the_instance(example_home: Home, lab: dict[str, Any]) -> None:
    h = example_home
    before = {i["InstanceId"] for i in _sandbox_live(h)}
    dirs_before = sorted(p.name for p in (h.sandbox_dir / "instances").iterdir() if p.is_dir())
    code, err = interrupt_at(cli_argv("launch", "hello-binder", "--sandbox"), h.root, cli_env(h), "sandbox: unpacking",
                             timeout=120)
    assert code == 130, err
    assert "cleanup: removed instance" in err
    assert {i["InstanceId"] for i in _sandbox_live(h)} == before
    assert sorted(p.name for p in (h.sandbox_dir / "instances").iterdir() if p.is_dir()) == dirs_before


def _endpoint(h: Home) -> str:
    from imagefactory.sandbox.emulator import status

    info = status(h.emulator_dir)
    assert info is not None
    return info.endpoint


def _record_timing(reached: float, launch_seconds: float) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    figures = {"launch_command_seconds": launch_seconds, "launch_to_jupyterlab_seconds": round(reached, 2)}
    (ARTIFACTS / "sandbox-launch-timing.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(f"sandbox launch-to-JupyterLab: {reached:.1f} s (launch command {launch_seconds:.1f} s)")


@pytest.mark.network  # the lab is a provisioned bake (packages from the index)
def test_sandbox_launch_that_fails_after_run_instances_leaves_nothing(example_home: Home, lab: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    from imagefactory.sandbox.instances import image_path

    h = example_home
    # a second "build" (its own AMI, tagged as a bake tags it) whose packed image is broken: the local boot
    # fails after run_instances succeeded
    entry = catalog.load(h.catalog_path("sandbox")).images["hello-binder"]
    good = entry.build(lab["build_id"])
    assert good is not None
    ec2 = boto3.client("ec2", region_name="us-west-2", endpoint_url=_endpoint(h), **_creds())
    ami = ec2.copy_image(SourceImageId=good.amis["us-west-2"], SourceRegion="us-west-2", Name="broken",
                         TagSpecifications=[{"ResourceType": "image", "Tags": [
                             {"Key": "imagefactory:build-id", "Value": "20261127-999999-dead"}]}])["ImageId"]
    broken = Build(**{**good.__dict__, "id": "20261127-999999-dead", "created": "2099-01-01T00:00:00Z",
                      "amis": {"us-west-2": ami}})
    catalog.update(h.catalog_path("sandbox"), lambda cat: catalog.record(
        cat, name="hello-binder", repo=entry.repo, recipe=entry.recipe, recipe_digest=entry.recipe_digest,
        build=broken))
    image_path(h, broken.id).write_bytes(b"not a zstd archive")
    try:
        before = {i["InstanceId"] for i in _sandbox_live(h)}
        error = last_error(cli(h, "launch", "hello-binder", "--sandbox"))
        assert "unpacking" in error
        assert {i["InstanceId"] for i in _sandbox_live(h)} == before
        assert not [p for p in (h.sandbox_dir / "instances").iterdir() if p.name not in before
                    and not any(p.name.startswith(b) for b in before)]
    finally:
        image_path(h, broken.id).unlink()
        catalog.update(h.catalog_path("sandbox"), lambda cat: _without(cat, broken.id))
        ec2.deregister_image(ImageId=ami)


def _sandbox_live(h: Home) -> list[dict[str, Any]]:
    ec2 = boto3.client("ec2", region_name="us-west-2", endpoint_url=_endpoint(h), **_creds())
    reservations = ec2.describe_instances(Filters=[
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def _without(cat: catalog.Catalog, build_id: str) -> catalog.Catalog:
    return catalog.forget_build(cat, name="hello-binder", build_id=build_id)

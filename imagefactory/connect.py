"""Reach and manage launched instances: find one (id or image name), open the ssh tunnel to its JupyterLab,
read its token over ssh and hand back the lab URL (Ctrl-C closes the tunnel; no ssh process is left
behind); list them with their cost so far; stop, start, terminate (sandbox instances locally too).

The token is read over ssh from the file the image's token script wrote (its path is in
/etc/imagefactory/jupyter.env) and appears only in the URL this module returns: it is never logged.
ssh checks host keys per instance (`HostKeyAlias` = instance id, in ~/.ssh/imagefactory-known-hosts/);
the sandbox writes the instance's freshly made host keys there at launch, AWS instances are trusted on
first use.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import FrameType
from typing import Any

from imagefactory import catalog, pricing, proc
from imagefactory.cloud import instances as ec2
from imagefactory.cloud.target import SANDBOX_NOTICE, Target, choose_target, open_target
from imagefactory.errors import CloudError
from imagefactory.home import Home

Progress = Callable[[str], None]
REMOTE_READ = ('. /etc/imagefactory/jupyter.env && printf "%s\\n" "$IF_JUPYTER_PORT" && '
               'cat -- "$JUPYTER_TOKEN_FILE"')
TOKEN_WAIT = 180.0
LAB_WAIT = 180.0


@dataclass(frozen=True)
class Endpoint:
    """How to ssh into one instance."""

    instance_id: str
    region: str
    host: str
    port: int
    user: str
    key: Path
    jupyter_port: int | None  # known locally (sandbox); else read from the instance

    @property
    def known_hosts(self) -> Path:
        return Path.home() / ".ssh" / "imagefactory-known-hosts" / self.instance_id


def ssh_argv(ep: Endpoint, *extra: str, command: str | None = None) -> list[str]:
    ep.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    options = {"IdentitiesOnly": "yes", "BatchMode": "yes", "UserKnownHostsFile": str(ep.known_hosts),
               "StrictHostKeyChecking": "accept-new", "HostKeyAlias": ep.instance_id, "ConnectTimeout": "10",
               "ServerAliveInterval": "30", "LogLevel": "ERROR"}
    argv = ["ssh", "-i", str(ep.key), "-p", str(ep.port), "-F", "none"]
    for key, value in options.items():
        argv += ["-o", f"{key}={value}"]
    return [*argv, *extra, f"{ep.user}@{ep.host}", *([command] if command else [])]


def endpoint(home: Home, target: Target, region: str, instance: dict[str, Any]) -> Endpoint:
    iid = instance["InstanceId"]
    if instance["State"]["Name"] != "running":
        raise CloudError(f"instance {iid} is {instance['State']['Name']}", f"start it: invoke start {iid}")
    tags = ec2.tags_of(instance)
    key = Path.home() / ".ssh" / tags.get("imagefactory:key-file", f"{instance.get('KeyName')}.pem")
    if not key.exists():
        raise CloudError(f"the private key for {iid} is not at {key}", "connect from the machine that launched it")
    user = tags.get("imagefactory:login-user", "ubuntu")
    if not target.sandbox:
        return Endpoint(iid, region, instance.get("PublicIpAddress", ""), ec2.SSH_PORT, user, key, None)
    from imagefactory.sandbox import instances as local

    booted = local.load(home, iid)
    if booted is None or not local.is_up(booted):
        raise CloudError(f"sandbox instance {iid} is not running here", f"start it: invoke start {iid}")
    return Endpoint(iid, region, "127.0.0.1", booted.ssh_port, user, key, booted.jupyter_port)


def read_lab(ep: Endpoint, wait: float = TOKEN_WAIT) -> tuple[int, str]:
    """(JupyterLab's port on the instance, its token), retried while first boot is still making the token."""
    deadline = time.monotonic() + wait
    while True:
        done = proc.run(ssh_argv(ep, command=REMOTE_READ), timeout=60, check=False)
        lines = done.stdout.split("\n")
        if done.returncode == 0 and len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].strip():
            port = ep.jupyter_port or int(lines[0].strip())
            return port, lines[1].strip()
        if time.monotonic() > deadline:
            detail = done.stderr.strip().splitlines()[-1:] or ["no token yet"]
            raise CloudError(f"could not read JupyterLab's token on {ep.instance_id}: {detail[0]}",
                             "wait a minute after launch and retry")
        time.sleep(2.0)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Tunnel:
    """A running `ssh -N -L` and the lab URL it serves."""

    url: str
    local_port: int
    process: subprocess.Popen[str]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stderr:
            self.process.stderr.close()

    def hold(self, progress: Progress) -> None:
        """Keep the tunnel open until Ctrl-C (or SIGTERM, or ssh ending); always close it."""
        def stop(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, stop)
        try:
            progress(f"tunnel open on localhost:{self.local_port}; press Ctrl-C to close it")
            code = self.process.wait()
            raise CloudError(f"the ssh tunnel ended (exit code {code})", "is the instance still running?")
        except KeyboardInterrupt:
            progress("tunnel closed")
        finally:
            self.close()
            signal.signal(signal.SIGTERM, previous)


def open_tunnel(ep: Endpoint, local_port: int, jupyter_port: int, token: str) -> Tunnel:
    if not _port_free(local_port):
        raise CloudError(f"local port {local_port} is in use", "pass --local-port with a free port")
    argv = ssh_argv(ep, "-N", "-o", "ExitOnForwardFailure=yes", "-L",
                    f"127.0.0.1:{local_port}:localhost:{jupyter_port}")
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    tunnel = Tunnel(f"http://localhost:{local_port}/lab?token={token}", local_port, process)
    try:
        _wait_forward(tunnel)
        _wait_lab(tunnel, token)
    except BaseException:
        tunnel.close()
        raise
    return tunnel


def _wait_forward(tunnel: Tunnel, wait: float = 30.0) -> None:
    deadline = time.monotonic() + wait
    while True:
        if tunnel.process.poll() is not None:
            err = tunnel.process.stderr.read() if tunnel.process.stderr else ""
            last = (err.strip().splitlines() or ["no output"])[-1]
            raise CloudError(f"ssh could not open the tunnel: {last}", "check the instance runs and the key matches")
        try:
            with socket.create_connection(("127.0.0.1", tunnel.local_port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise CloudError(f"the tunnel on localhost:{tunnel.local_port} did not open in {wait:.0f} s",
                                 "retry") from None
            time.sleep(0.2)


def _wait_lab(tunnel: Tunnel, token: str, wait: float = LAB_WAIT) -> None:
    """Until JupyterLab answers /api/status through the tunnel (it may still be starting)."""
    import requests

    session = requests.Session()
    session.trust_env = False  # never send the token through a proxy
    deadline = time.monotonic() + wait
    url = f"http://127.0.0.1:{tunnel.local_port}/api/status"
    while True:
        try:
            if session.get(url, headers={"Authorization": f"token {token}"}, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline or tunnel.process.poll() is not None:
            raise CloudError(f"JupyterLab did not answer through the tunnel within {wait:.0f} s",
                             "see 'systemctl status imagefactory-jupyter' on the instance")
        time.sleep(1.0)


def catalog_regions(home: Home, target: Target) -> tuple[str, ...]:
    """Where this target's images have AMIs: the regions worth looking for instances in."""
    cat = catalog.load(home.catalog_path(target.kind))
    return tuple(sorted({r for e in cat.images.values() for b in e.builds for r in b.amis}))


def locate(home: Home, target: Target, ident: str) -> tuple[str, dict[str, Any]]:
    """(region, instance) for an instance id, or for an image name when one instance of it is live."""
    found = ec2.managed(target, catalog_regions(home, target))
    if ident.startswith("i-"):
        hits = [(r, i) for r, i in found if i["InstanceId"] == ident]
    else:
        hits = [(r, i) for r, i in found if ec2.tags_of(i).get("imagefactory:image") == ident]
        running = [(r, i) for r, i in hits if i["State"]["Name"] == "running"]
        hits = running if len(running) == 1 else hits
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise CloudError(f"no live instance {ident!r} (launched by imagefactory, {target.kind})",
                         "see 'invoke instances'")
    ids = ", ".join(i["InstanceId"] for _, i in hits)
    raise CloudError(f"{len(hits)} instances of {ident!r}: {ids}", "pass the instance id")


def connect(home: Home, target: Target, region: str, instance: dict[str, Any], local_port: int,
            progress: Progress) -> Tunnel:
    ep = endpoint(home, target, region, instance)
    progress(f"reading JupyterLab's token on {ep.instance_id} over ssh ({ep.user}@{ep.host}:{ep.port})")
    jupyter_port, token = read_lab(ep)
    progress(f"opening the tunnel localhost:{local_port} -> {ep.instance_id}:{jupyter_port}")
    return open_tunnel(ep, local_port, jupyter_port, token)


def open_catalog_target(home: Home, sandbox: bool, progress: Progress) -> Target:
    target = open_target(choose_target(sandbox=sandbox), home.emulator_dir)
    if target.sandbox:
        progress(SANDBOX_NOTICE.format(endpoint=target.endpoint, catalog=home.catalog_path("sandbox")))
    return target


# ---- list, stop, start, terminate --------------------------------------------------------------------------

def rows(home: Home, target: Target) -> list[dict[str, Any]]:
    from datetime import UTC, datetime

    out: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    price_of = lru_cache(maxsize=None)(lambda region, kind, spot: pricing.price(target, region, kind, spot=spot))
    for region, inst in ec2.managed(target, catalog_regions(home, target)):
        tags, state = ec2.tags_of(inst), inst["State"]["Name"]
        spot = inst.get("InstanceLifecycle") == "spot"
        uptime = (now - inst["LaunchTime"]).total_seconds() if state == "running" else 0.0
        hourly = price_of(region, inst["InstanceType"], spot).hourly(spot)
        out.append({"id": inst["InstanceId"], "image": tags.get("imagefactory:image", "-"),
                    "build_id": tags.get("imagefactory:build-id"), "type": inst["InstanceType"], "state": state,
                    "spot": spot, "region": region, "uptime_seconds": round(uptime),
                    "hourly_usd": hourly, "cost_usd": pricing.cost_so_far(hourly, uptime), "target": target.kind})
    return out


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if seconds else "-"


def table(items: list[dict[str, Any]]) -> str:
    if not items:
        return "no instances: launch one with 'invoke launch IMAGE'"
    header = ("ID", "IMAGE", "TYPE", "STATE", "SPOT", "REGION", "UPTIME", "COST SO FAR")
    lines = [header] + [
        (r["id"], r["image"], r["type"], r["state"], "yes" if r["spot"] else "no", r["region"],
         _duration(r["uptime_seconds"]), "price unknown" if r["cost_usd"] is None else f"${r['cost_usd']:.2f}")
        for r in items]
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in lines)


def change(home: Home, target: Target, ident: str, action: str, progress: Progress) -> dict[str, Any]:
    """stop (keeps the disk), start, or terminate (deletes it) one instance; sandbox ones locally too."""
    region, inst = locate(home, target, ident)
    iid = inst["InstanceId"]
    local = None
    if target.sandbox:
        from imagefactory.sandbox import instances as local
    if local and action in ("stop", "terminate"):
        (local.halt if action == "stop" else local.remove)(home, iid)
    state = ec2.change_state(target, region, iid, action)
    if action == "start":
        state = ec2.wait_state(target, region, iid, "running", ec2.RUN_TIMEOUT)["State"]["Name"]
        if local:
            booted = local.boot(home, iid, progress)
            ec2.wait_ssh("127.0.0.1", booted.ssh_port, ec2.SSH_TIMEOUT)
    progress(f"{action}: {iid} ({region}) is {state}")
    return {"id": iid, "region": region, "action": action, "state": state, "target": target.kind}

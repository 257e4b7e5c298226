"""Launched instances: `launch`, `connect`, `instances`, `stop`, `start`, `terminate`.

All of them also work without a factory home on AWS (a student given an AMI): `launch --ami AMI_ID
--region R`, then the others by instance id with `--region R`.

Integer options are checked here, in one line naming the option and its range (the launcher's own):
--volume 1..16384 GB, EBS's limits (omitted: the image's own size; the launcher also refuses less than the
image's disk, naming its size), --autostop 0..10080 idle minutes (a week; 0 turns it off), --local-port
1024..65535 (no privileged ports).
"""

from __future__ import annotations

from typing import Any

from imagefactory.cli.common import JSON_HELP, SANDBOX_HELP, confirm, maybe_home, render, say, task, whole
from imagefactory.result import Result

INSTANCE_HELP = "Instance id (i-...) or image name"
REGION_HELP = "Region the instance is in (default: the catalog's regions, or without a home the configured region)"
VOLUME_GB = (1, 16384)
AUTOSTOP_MINUTES = (0, 7 * 24 * 60)
LOCAL_PORTS = (1024, 65535)
DEFAULT_LOCAL_PORT = 7005


def _local_port(value: str | None) -> int:
    port = whole(value, "--local-port", *LOCAL_PORTS)
    return DEFAULT_LOCAL_PORT if port is None else port


@task(positional=["name"], positional_unless={"name": "ami"}, help={
    "name": "Image name in the catalog",
    "ami": "Launch this AMI ID instead (any image you may launch; no factory home needed; needs --region)",
    "region": "Region to launch in (default: the latest build's first region; needed with --ami)",
    "type": "Instance type (default t3.medium)",
    "spot": "Launch a spot instance (persistent; stops, not terminates, on interruption)",
    "autostop": "Stop the instance after this many idle minutes, 0 to 10080 (default 60; 0 turns it off)",
    "volume": "Root volume size in GB, 1 to 16384, at least the image's (default: the image's size)",
    "key": "Key pair name to use; its private key is ~/.ssh/NAME.pem (default: imagefactory's own per region)",
    "cidr": "Address allowed to ssh in (default: your public address /32)",
    "allow_wide_cidr": "Accept a --cidr wider than a /24 (IPv6 /56): every address in it could try ssh",
    "local_port": f"Local port for the JupyterLab tunnel in the printed command, 1024 to 65535 "
                  f"(default {DEFAULT_LOCAL_PORT})",
    "sandbox": SANDBOX_HELP,
    "wait": "Wait until ssh answers (--no-wait: return once the instance runs)",
    "json": JSON_HELP,
})
def launch(c: Any, name: str | None = None, region: str | None = None, type: str = "t3.medium", spot: bool = False,
           autostop: str | None = None, volume: str | None = None, key: str | None = None, cidr: str | None = None,
           allow_wide_cidr: bool = False, local_port: str | None = None, sandbox: bool = False, wait: bool = True,
           json: bool = False, ami: str | None = None) -> None:
    """Launch an image from the catalog (or any AMI: --ami) and print the ssh and tunnel commands and the price."""
    from imagefactory.launch_plan import DEFAULT_AUTOSTOP, LaunchOptions, summary
    from imagefactory.launcher import launch as run_launch

    minutes = whole(autostop, "--autostop", *AUTOSTOP_MINUTES, "minutes")
    opts = LaunchOptions(name=name or "", ami=ami, region=region, instance_type=type, spot=spot,
                         autostop=DEFAULT_AUTOSTOP if minutes is None else minutes,
                         volume=whole(volume, "--volume", *VOLUME_GB, "GB", "leave it out for the image's size"),
                         key=key, cidr=cidr, allow_wide_cidr=allow_wide_cidr, local_port=_local_port(local_port),
                         sandbox=sandbox, wait=wait)
    done = run_launch(maybe_home(), opts, say)
    render(Result(done.to_dict(), summary(done)), json)


@task(help={
    "instance": INSTANCE_HELP,
    "local_port": f"Local port for the tunnel, 1024 to 65535 (default {DEFAULT_LOCAL_PORT})",
    "open": "Open the lab in a web browser",
    "region": REGION_HELP,
    "sandbox": SANDBOX_HELP,
})
def connect(c: Any, instance: str, local_port: str | None = None, open: bool = False, region: str | None = None,
            sandbox: bool = False) -> None:
    """Open the ssh tunnel to an instance's JupyterLab and print its URL; Ctrl-C closes it."""
    from imagefactory.connect import open_lab

    tunnel = open_lab(maybe_home(), instance, local_port=_local_port(local_port), sandbox=sandbox, progress=say,
                      region=region)
    print(tunnel.url, flush=True)
    if open:
        import webbrowser

        webbrowser.open(tunnel.url)
    tunnel.hold(say)


@task(help={"region": REGION_HELP, "sandbox": SANDBOX_HELP, "json": JSON_HELP})
def instances(c: Any, region: str | None = None, sandbox: bool = False, json: bool = False) -> None:
    """List launched instances: id, image, type, state, spot, region, uptime and cost so far."""
    from imagefactory.connect import listing

    render(listing(maybe_home(), sandbox=sandbox, progress=say, region=region), json)


def _change(instance: str, action: str, region: str | None, sandbox: bool, as_json: bool) -> None:
    from imagefactory.connect import change_instance

    render(change_instance(maybe_home(), instance, action, sandbox=sandbox, progress=say, region=region), as_json)


@task(help={"instance": INSTANCE_HELP, "region": REGION_HELP, "sandbox": SANDBOX_HELP, "json": JSON_HELP})
def stop(c: Any, instance: str, region: str | None = None, sandbox: bool = False, json: bool = False) -> None:
    """Stop an instance: its disk is kept (a small monthly cost), compute billing ends."""
    _change(instance, "stop", region, sandbox, json)


@task(help={"instance": INSTANCE_HELP, "region": REGION_HELP, "sandbox": SANDBOX_HELP, "json": JSON_HELP})
def start(c: Any, instance: str, region: str | None = None, sandbox: bool = False, json: bool = False) -> None:
    """Start a stopped instance again (then 'connect' to reach its JupyterLab)."""
    _change(instance, "start", region, sandbox, json)


@task(help={"instance": INSTANCE_HELP, "yes": "Do not ask for confirmation", "region": REGION_HELP,
            "sandbox": SANDBOX_HELP, "json": JSON_HELP})
def terminate(c: Any, instance: str, yes: bool = False, region: str | None = None, sandbox: bool = False,
              json: bool = False) -> None:
    """Terminate an instance: it and its disk are deleted, all its charges end."""
    if not yes:
        confirm(f"terminate {instance} and delete its disk?", f"not terminating {instance}")
    _change(instance, "terminate", region, sandbox, json)

"""Tasks for launched instances: launch, connect, instances, stop, start, terminate.

Thin, like imagefactory/tasks.py (whose `boundary`, `emit`, `say` and `_home` they use); each calls the
library (`imagefactory.launcher`, `imagefactory.connect`) and renders its result as text or JSON.
"""

from __future__ import annotations

import sys
from typing import Any

from invoke import task

from imagefactory.tasks import _home, boundary, emit, say

SANDBOX_HELP = "Use the local sandbox even if AWS credentials are configured"


@task(help={
    "name": "Image name in the catalog",
    "region": "Region to launch in (default: the latest build's first region)",
    "type": "Instance type (default t3.medium)",
    "spot": "Launch a spot instance (persistent; stops, not terminates, on interruption)",
    "autostop": "Stop the instance after this many idle minutes (default 60; 0 turns it off)",
    "volume": "Root volume size in GB (default 0: the image's size)",
    "key": "Key pair name to use; its private key is ~/.ssh/NAME.pem (default: imagefactory's own per region)",
    "cidr": "Address allowed to ssh in (default: your public address /32)",
    "local_port": "Local port for the JupyterLab tunnel in the printed command (default 7005)",
    "sandbox": SANDBOX_HELP,
    "wait": "Wait until ssh answers (--no-wait: return once the instance runs)",
    "json": "Print the result as JSON on stdout",
})
@boundary
def launch(c: Any, name: str, region: str | None = None, type: str = "t3.medium", spot: bool = False,
           autostop: int = 60, volume: int = 0, key: str | None = None, cidr: str | None = None,
           local_port: int = 7005, sandbox: bool = False, wait: bool = True, json: bool = False) -> None:
    """Launch an image from the catalog and print the ssh and tunnel commands and the price."""
    from imagefactory.launcher import LaunchOptions, summary
    from imagefactory.launcher import launch as run_launch

    opts = LaunchOptions(name=name, region=region, instance_type=type, spot=spot, autostop=autostop,
                         volume=volume or None, key=key, cidr=cidr, local_port=local_port, sandbox=sandbox, wait=wait)
    result = run_launch(_home(), opts, say)
    emit(result.to_dict(), json, summary(result))


@task(help={
    "instance": "Instance id (i-...) or image name",
    "local_port": "Local port for the tunnel (default 7005)",
    "open": "Open the lab in a web browser",
    "sandbox": SANDBOX_HELP,
})
@boundary
def connect(c: Any, instance: str, local_port: int = 7005, open: bool = False, sandbox: bool = False) -> None:
    """Open the ssh tunnel to an instance's JupyterLab and print its URL; Ctrl-C closes it."""
    from imagefactory.connect import connect as open_lab
    from imagefactory.connect import locate, open_catalog_target

    home = _home()
    target = open_catalog_target(home, sandbox, say)
    tunnel = open_lab(home, target, *locate(home, target, instance), local_port, say)
    print(tunnel.url, flush=True)
    if open:
        import webbrowser

        webbrowser.open(tunnel.url)
    tunnel.hold(say)


@task(help={"sandbox": SANDBOX_HELP, "json": "Print JSON for scripts"})
@boundary
def instances(c: Any, sandbox: bool = False, json: bool = False) -> None:
    """List launched instances: id, image, type, state, spot, region, uptime and cost so far."""
    from imagefactory.connect import open_catalog_target, rows, table

    home = _home()
    items = rows(home, open_catalog_target(home, sandbox, say))
    emit(items, json, table(items))


def _change(instance: str, action: str, sandbox: bool, as_json: bool) -> None:
    from imagefactory.connect import change, open_catalog_target

    home = _home()
    result = change(home, open_catalog_target(home, sandbox, say), instance, action, say)
    emit(result, as_json, f"{result['id']}: {result['state']}")


@task(help={"instance": "Instance id (i-...) or image name", "sandbox": SANDBOX_HELP, "json": "Print JSON"})
@boundary
def stop(c: Any, instance: str, sandbox: bool = False, json: bool = False) -> None:
    """Stop an instance: its disk is kept (a small monthly cost), compute billing ends."""
    _change(instance, "stop", sandbox, json)


@task(help={"instance": "Instance id (i-...) or image name", "sandbox": SANDBOX_HELP, "json": "Print JSON"})
@boundary
def start(c: Any, instance: str, sandbox: bool = False, json: bool = False) -> None:
    """Start a stopped instance again (then 'connect' to reach its JupyterLab)."""
    _change(instance, "start", sandbox, json)


@task(help={"instance": "Instance id (i-...) or image name", "yes": "Do not ask for confirmation",
            "sandbox": SANDBOX_HELP, "json": "Print JSON"})
@boundary
def terminate(c: Any, instance: str, yes: bool = False, sandbox: bool = False, json: bool = False) -> None:
    """Terminate an instance: it and its disk are deleted, all its charges end."""
    from imagefactory.errors import CloudError

    if not yes:
        if not sys.stdin or not sys.stdin.isatty():
            raise CloudError(f"not terminating {instance}: there is no terminal to confirm on", "pass --yes")
        say(f"terminate {instance} and delete its disk? [y/N]")
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            raise CloudError(f"not terminating {instance}", "answer y, or pass --yes")
    _change(instance, "terminate", sandbox, json)

"""Reach and manage launched instances: find one (id or image name), read its JupyterLab token over ssh
and open the tunnel (`imagefactory.tunnel`) to hand back the lab URL; list them with their cost so far;
stop, start, terminate (sandbox instances locally too). Listing and changing stay here beside `locate`,
which both use.

Without a factory home (a student, `home` None) these work on AWS by instance id in one region: `--region`,
else the configured default region (AWS_REGION, AWS_DEFAULT_REGION, ~/.aws/config); the key file is ~/.ssh's
as at launch.

The token is read over ssh from the file the image's token script wrote (its path is in
/etc/imagefactory/jupyter.env) and appears only in the URL this module returns: it is never logged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from imagefactory import catalog, pricing, proc
from imagefactory.cloud import instances as ec2
from imagefactory.cloud.target import SANDBOX_NOTICE, Target, choose_target, open_target, sandbox_at_endpoint
from imagefactory.errors import CloudError, HomeNotFound
from imagefactory.home import Home, find_home
from imagefactory.result import Result
from imagefactory.tags import BUILD_ID_TAG, IMAGE_TAG, KEY_FILE_TAG, LOGIN_USER_TAG
from imagefactory.tunnel import Endpoint, Tunnel, open_tunnel, ssh_argv
from imagefactory.waiting import WaitTimeout, wait_for

Progress = Callable[[str], None]
REMOTE_READ = ('. /etc/imagefactory/jupyter.env && printf "%s\\n" "$IF_JUPYTER_PORT" && '
               'cat -- "$JUPYTER_TOKEN_FILE"')
TOKEN_WAIT = 180.0
STUDENT_NOTICE = ("SANDBOX: AWS_ENDPOINT_URL is the local EC2 emulator at {endpoint}; acting as account {account}, "
                  "instances run on this machine. Nothing here touches AWS.")


def endpoint(home: Home | None, target: Target, region: str, instance: dict[str, Any]) -> Endpoint:
    iid = instance["InstanceId"]
    if instance["State"]["Name"] != "running":
        again = f"invoke start {iid}" if home is not None else f"imagefactory start {iid} --region {region}"
        raise CloudError(f"instance {iid} is {instance['State']['Name']}", f"start it: {again}")
    tags = ec2.tags_of(instance)
    key = Path.home() / ".ssh" / tags.get(KEY_FILE_TAG, f"{instance.get('KeyName')}.pem")
    if not key.exists():
        raise CloudError(f"the private key for {iid} is not at {key}", "connect from the machine that launched it")
    user = tags.get(LOGIN_USER_TAG, "ubuntu")
    if not target.sandbox:
        return Endpoint(iid, region, instance.get("PublicIpAddress", ""), ec2.SSH_PORT, user, key, None)
    from imagefactory.sandbox import instances as local

    booted = local.load(local.data_home(target), iid)
    if booted is None or not local.is_up(booted):
        raise CloudError(f"sandbox instance {iid} is not running here", f"start it: {again}")
    return Endpoint(iid, region, "127.0.0.1", booted.ssh_port, user, key, booted.jupyter_port)


def read_lab(ep: Endpoint, wait: float = TOKEN_WAIT) -> tuple[int, str]:
    """(JupyterLab's port on the instance, its token), retried while first boot is still making the token."""
    last: list[str] = ["no token yet"]

    def token() -> tuple[int, str] | None:
        done = proc.run(ssh_argv(ep, command=REMOTE_READ), timeout=60, check=False)
        lines = done.stdout.split("\n")
        if done.returncode == 0 and len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].strip():
            return ep.jupyter_port or int(lines[0].strip()), lines[1].strip()
        last[:] = done.stderr.strip().splitlines()[-1:] or ["no token yet"]
        return None

    try:
        return wait_for(token, timeout=wait, interval=2.0, what="JupyterLab's token")
    except WaitTimeout:
        raise CloudError(f"could not read JupyterLab's token on {ep.instance_id}: {last[0]}",
                         "wait a minute after launch and retry") from None


def catalog_regions(home: Home, target: Target) -> tuple[str, ...]:
    """Where this target's images have AMIs: the regions worth looking for instances in."""
    cat = catalog.load(home.catalog_path(target.kind))
    return tuple(sorted({r for e in cat.images.values() for b in e.builds for r in b.amis}))


def search_regions(home: Home | None, target: Target, region: str | None) -> tuple[str, ...]:
    """`region` if given; else the catalog's regions (in a home), or the configured default region."""
    if region is not None:
        from imagefactory.cloud.target import check_regions

        return check_regions((region,))
    if home is not None:
        return catalog_regions(home, target)
    import boto3

    default = os.environ.get("AWS_REGION") or boto3.session.Session().region_name  # AWS_DEFAULT_REGION, config
    if not default:
        raise CloudError("no region to look for the instance in (no factory home, no default region)",
                         "pass --region R, the region you launched in")
    return (default,)


def locate(home: Home | None, target: Target, ident: str, region: str | None = None) -> tuple[str, dict[str, Any]]:
    """(region, instance) for an instance id, or for an image name when one instance of it is live."""
    if home is None and not ident.startswith("i-"):
        raise no_home(f"{ident!r} is not an instance id, and only a home's catalog knows image names",
                      "pass the instance id (i-...) that launch printed")
    found = ec2.managed(target, search_regions(home, target, region))
    if ident.startswith("i-"):
        hits = [(r, i) for r, i in found if i["InstanceId"] == ident]
    else:
        hits = [(r, i) for r, i in found if ec2.tags_of(i).get(IMAGE_TAG) == ident]
        running = [(r, i) for r, i in hits if i["State"]["Name"] == "running"]
        hits = running if len(running) == 1 else hits
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise CloudError(f"no live instance {ident!r} (launched by imagefactory, {target.kind})",
                         "see 'invoke instances'")
    ids = ", ".join(i["InstanceId"] for _, i in hits)
    raise CloudError(f"{len(hits)} instances of {ident!r}: {ids}", "pass the instance id")


def connect(home: Home | None, target: Target, region: str, instance: dict[str, Any], local_port: int,
            progress: Progress) -> Tunnel:
    ep = endpoint(home, target, region, instance)
    progress(f"reading JupyterLab's token on {ep.instance_id} over ssh ({ep.user}@{ep.host}:{ep.port})")
    jupyter_port, token = read_lab(ep)
    progress(f"opening the tunnel localhost:{local_port} -> {ep.instance_id}:{jupyter_port}")
    return open_tunnel(ep, local_port, jupyter_port, token)


def open_lab(home: Home | None, ident: str, *, local_port: int, sandbox: bool, progress: Progress,
             region: str | None = None) -> Tunnel:
    """The command `connect`: find the instance (id or image name) and open the tunnel to its JupyterLab."""
    target = open_any_target(home, sandbox, progress)
    return connect(home, target, *locate(home, target, ident, region), local_port, progress)


def open_catalog_target(home: Home, sandbox: bool, progress: Progress) -> Target:
    target = open_target(choose_target(sandbox=sandbox), home.emulator_dir)
    if target.sandbox:
        progress(SANDBOX_NOTICE.format(endpoint=target.endpoint, catalog=home.catalog_path("sandbox")))
    return target


def open_any_target(home: Home | None, sandbox: bool, progress: Progress) -> Target:
    """The target with or without a factory home. Without one: AWS, or the sandbox when AWS_ENDPOINT_URL is
    its emulator (as the caller's credentials say: a student's assumed role; its instances run on this
    machine from the packed images of the emulator's home). Else the sandbox needs a home: its emulator and
    local instances live in one."""
    if home is not None:
        return open_catalog_target(home, sandbox, progress)
    found = sandbox_at_endpoint()
    if found is not None:
        progress(STUDENT_NOTICE.format(endpoint=found.endpoint, account=found.account))
        return found
    if choose_target(sandbox=sandbox) == "sandbox":
        why = "--sandbox was given" if sandbox else "no AWS credentials are configured"
        raise no_home(f"the sandbox's emulator lives in a home, and {why}",
                      "configure AWS credentials (aws configure) to launch an AMI you were given")
    return open_target("aws", Path("."))  # no emulator directory is used on AWS


def no_home(why: str, fix: str) -> HomeNotFound:
    """The one 'no factory home here' error (`find_home`'s), saying why this command needed one."""
    try:
        find_home()
    except HomeNotFound as exc:
        return HomeNotFound(f"{exc.message}; {why}", f"{exc.hint}; or {fix}")
    return HomeNotFound(why, fix)  # a home appeared meanwhile: still one line


# ---- list, stop, start, terminate --------------------------------------------------------------------------

def rows(home: Home | None, target: Target, region: str | None = None) -> list[dict[str, Any]]:
    from datetime import UTC, datetime

    out: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    price_of = lru_cache(maxsize=None)(lambda where, kind, spot: pricing.price(target, where, kind, spot=spot))
    for where, inst in ec2.managed(target, search_regions(home, target, region)):
        tags, state = ec2.tags_of(inst), inst["State"]["Name"]
        spot = inst.get("InstanceLifecycle") == "spot"
        uptime = (now - inst["LaunchTime"]).total_seconds() if state == "running" else 0.0
        hourly = price_of(where, inst["InstanceType"], spot).hourly(spot)
        out.append({"id": inst["InstanceId"], "image": tags.get(IMAGE_TAG, "-"),
                    "build_id": tags.get(BUILD_ID_TAG), "type": inst["InstanceType"], "state": state,
                    "spot": spot, "region": where, "uptime_seconds": round(uptime),
                    "hourly_usd": hourly, "cost_usd": pricing.cost_so_far(hourly, uptime), "target": target.kind})
    return out


def listing(home: Home | None, *, sandbox: bool, progress: Progress, region: str | None = None) -> Result:
    """The command `instances`: every launched instance with its uptime and cost so far."""
    items = rows(home, open_any_target(home, sandbox, progress), region)
    return Result(items, table(items))


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


def change_instance(home: Home | None, ident: str, action: str, *, sandbox: bool, progress: Progress,
                    region: str | None = None) -> Result:
    """The commands `stop`, `start`, `terminate`."""
    done = change(home, open_any_target(home, sandbox, progress), ident, action, progress, region)
    return Result(done, f"{done['id']}: {done['state']}")


def change(home: Home | None, target: Target, ident: str, action: str, progress: Progress,
           region: str | None = None) -> dict[str, Any]:
    """stop (keeps the disk), start, or terminate (deletes it) one instance; sandbox ones locally too."""
    region, inst = locate(home, target, ident, region)
    iid = inst["InstanceId"]
    local, data = None, target.sandbox_home  # the sandbox's data plane, whoever calls
    if target.sandbox and data is not None:
        from imagefactory.sandbox import instances as local
    if local and action in ("stop", "terminate"):
        (local.halt if action == "stop" else local.remove)(data, iid)
    state = ec2.change_state(target, region, iid, action)
    if action == "start":
        state = ec2.wait_state(target, region, iid, "running", ec2.RUN_TIMEOUT)["State"]["Name"]
        if local:
            booted = local.boot(data, iid, progress)
            ec2.wait_ssh("127.0.0.1", booted.ssh_port, ec2.SSH_TIMEOUT)
    progress(f"{action}: {iid} ({region}) is {state}")
    return {"id": iid, "region": region, "action": action, "state": state, "target": target.kind}

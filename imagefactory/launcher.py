"""Launch an image from the catalog, or any AMI the caller may launch (`--ami`, no home needed): a pure
choice of build and region, then the effects, undone on failure.

    launch(home, opts, progress)  -> LaunchResult  key pair, security group, instance, wait, prices

Without a factory home (`home` None: a student) only `--ami` works: on AWS, or in the sandbox when
AWS_ENDPOINT_URL is its emulator (the student's own credentials; the instance runs on this machine).

What is decided before the first effect (options, the build and AMI, user data, commands, the summary) is
pure and lives in `imagefactory.launch_plan`.

A failed or interrupted launch removes what it made in that call (the instance, and a security group or
key pair it created); what existed before is left alone. In the sandbox the instance is also started as
a local instance (`imagefactory.sandbox.instances`): the packed root filesystem of the build the AMI
holds (`sandbox.contents`: asked of the emulator, for the owner as for an account it is shared with), its
sshd and JupyterLab on loopback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagefactory import catalog, pricing
from imagefactory.catalog import ImageEntry
from imagefactory.cloud import access
from imagefactory.cloud import instances as ec2
from imagefactory.cloud.target import Target
from imagefactory.connect import no_home, open_any_target
from imagefactory.errors import CatalogError, CloudError, FactoryError
from imagefactory.home import Home
from imagefactory.launch_plan import (
    Choice,
    LaunchOptions,
    LaunchResult,
    by_ami,
    check_options,
    choose,
    commands,
    user_data,
)
from imagefactory.tags import AUTOSTOP_TAG, BUILD_ID_TAG, IMAGE_TAG, KEY_FILE_TAG, LOGIN_USER_TAG

Progress = Callable[[str], None]
def image_facts(home: Home, name: str) -> tuple[str, int, tuple[str, ...]]:
    """The image's login user, JupyterLab port and region order, from its recipe (defaults if it is gone)."""
    path = home.recipe_path(name)
    if not path.exists():
        return "ubuntu", 8889, ()
    from imagefactory.recipe import load_recipe

    recipe = load_recipe(path)
    return recipe.image.login_user, recipe.jupyter.port, tuple(recipe.image.regions)


def find_entry(home: Home, target: Target, name: str) -> ImageEntry:
    cat = catalog.load(home.catalog_path(target.kind))
    if name not in cat.images:
        other = "aws" if target.sandbox else "sandbox"
        if name in catalog.load(home.catalog_path(other)).images:
            raise CatalogError(f"no image named {name!r} in the {target.kind} catalog",
                               f"it is in the {other} catalog" + ("; pass --sandbox" if other == "sandbox" else ""))
    return cat.image(name)


@dataclass(frozen=True)
class _Plan:
    """Everything decided before the first effect."""

    choice: Choice
    user: str
    jupyter_port: int
    cidr: str
    notes: tuple[str, ...] = ()
    content: str = ""  # sandbox: the build whose packed rootfs the instance boots


@dataclass
class _Made:
    """What this launch created so far, so that a failure removes exactly that."""

    key: access.KeyPair | None = None
    group: str | None = None
    instance: str | None = None
    local: bool = False


def launch(home: Home | None, opts: LaunchOptions, progress: Progress) -> LaunchResult:
    check_options(opts)
    target = open_any_target(home, opts.sandbox, progress)
    notes: tuple[str, ...] = ()
    if opts.ami is not None:
        assert opts.region is not None
        picked = by_ami(_visible_image(target, opts.region, opts.ami), opts.region)
        choice, user, jupyter_port, notes = picked.choice, picked.user, picked.jupyter_port, picked.notes
    else:
        if home is None:
            raise no_home(f"image {opts.name!r} is looked up in a home's catalog",
                          "launch an AMI you were given: imagefactory launch --ami AMI_ID --region R")
        entry = find_entry(home, target, opts.name)
        user, jupyter_port, order = image_facts(home, opts.name)
        choice = choose(entry, opts.region, order)
    content = ""
    if target.sandbox:  # what the AMI holds, as the emulator says for this caller (owner or student alike)
        from imagefactory.sandbox import instances as local

        content = local.content_of(target, choice.region, choice.ami)
    cidr = access.check_cidr(opts.cidr, allow_wide=opts.allow_wide_cidr) if opts.cidr else access.caller_cidr(target)
    plan = _Plan(choice, user, jupyter_port, cidr, notes, content)
    made = _Made()
    try:
        return _create(home, target, opts, plan, made, progress)
    except BaseException as exc:
        _rollback(target, choice.region, made, progress)
        if isinstance(exc, FactoryError | KeyboardInterrupt):
            raise
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError | BotoCoreError):
            raise CloudError(f"launch of {opts.name or opts.ami} in {choice.region} failed: {_boto_message(exc)}",
                             "nothing was left running; fix the option named above and retry") from None
        raise


def _visible_image(target: Target, region: str, ami: str) -> dict[str, Any]:
    """The AMI as this caller sees it; one line when it may not (not shared with it, or another region)."""
    from botocore.exceptions import ClientError

    try:
        images = target.client("ec2", region).describe_images(ImageIds=[ami])["Images"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"):
            raise CloudError(f"could not look up {ami} in {region}: {_boto_message(exc)}",
                             "check your credentials and --region") from None
        images = []
    if not images:
        account = f"account {target.account}" if target.account else "your account"
        raise CloudError(f"AMI {ami} is not in {region} for {account}",
                         "check --region (an AMI exists only where it was built or copied), or ask whoever "
                         "shared it to share it with your account")
    return images[0]


def _boto_message(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if response and "Error" in response:
        return f"{response['Error'].get('Code')}: {response['Error'].get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


def _create(home: Home | None, target: Target, opts: LaunchOptions, plan: _Plan, made: _Made,
            progress: Progress) -> LaunchResult:
    started = time.monotonic()
    choice = plan.choice
    device, size = ec2.root_device(target, choice.region, choice.ami)
    volume = opts.volume or size
    if volume < size:
        raise CloudError(f"--volume {volume} GB is smaller than the image's {size} GB disk", f"pass --volume {size}")
    made.key = access.ensure_key_pair(target, choice.region, opts.key)
    group, created = access.ensure_security_group(target, choice.region, plan.cidr)
    made.group = group if created else None
    tags = {"Name": "-".join(x for x in (choice.image, choice.build_id) if x), IMAGE_TAG: choice.image,
            BUILD_ID_TAG: choice.build_id, LOGIN_USER_TAG: plan.user,
            AUTOSTOP_TAG: str(opts.autostop), KEY_FILE_TAG: made.key.path.name,
            "owner": _owner(target)}
    spec = ec2.RunSpec(choice.ami, opts.instance_type, made.key.name, group, device, volume,
                       user_data(opts.autostop), tags, opts.spot)
    what = f"{choice.image} build {choice.build_id}" if choice.build_id else choice.image
    progress(f"launching {what} ({choice.ami}) in {choice.region} as "
             f"{opts.instance_type}{' spot' if opts.spot else ''}")
    host, port, jupyter_port = _start(target, spec, plan, made, progress)
    if opts.wait:
        progress(f"instance {made.instance} runs; waiting for ssh at {host}:{port}")
        ec2.wait_ssh(host, port, ec2.SSH_TIMEOUT)
    prices = pricing.price(target, choice.region, opts.instance_type, spot=opts.spot)
    ssh_cmd, tunnel_cmd = commands(str(made.key.path), plan.user, host, port, opts.local_port, jupyter_port)
    assert made.instance is not None
    return LaunchResult(
        instance_id=made.instance, image=choice.image, build_id=choice.build_id, ami=choice.ami,
        region=choice.region, target=target.kind, instance_type=opts.instance_type, spot=opts.spot, host=host,
        ssh_port=port, user=plan.user, key_path=str(made.key.path), key_name=made.key.name, security_group=group,
        cidr=plan.cidr, local_port=opts.local_port, jupyter_port=jupyter_port, autostop_minutes=opts.autostop,
        volume_gb=volume, ssh_command=ssh_cmd, tunnel_command=tunnel_cmd, price=prices.to_dict(),
        disk_month_usd=pricing.disk_month(pricing.load_table(), choice.region, volume), by_ami=opts.ami is not None,
        created=_created(made), seconds=round(time.monotonic() - started, 2), notes=plan.notes + _notes(target, opts))


def _notes(target: Target, opts: LaunchOptions) -> tuple[str, ...]:
    notes = [] if opts.wait else ["did not wait for ssh (--no-wait): it answers a minute or so after boot"]
    if target.sandbox:
        notes.append("sandbox: a local instance on this machine, nothing is billed; prices are AWS's for reference")
    return tuple(notes)


def _start(target: Target, spec: ec2.RunSpec, plan: _Plan, made: _Made,
           progress: Progress) -> tuple[str, int, int]:
    """Run the instance and wait until it runs; in the sandbox, boot it locally. Returns host, ssh and
    JupyterLab ports."""
    region = plan.choice.region
    made.instance = ec2.run_instance(target, region, spec)["InstanceId"]
    instance = ec2.wait_state(target, region, made.instance, "running", ec2.RUN_TIMEOUT)
    if not target.sandbox:
        return instance.get("PublicIpAddress", ""), ec2.SSH_PORT, plan.jupyter_port
    from imagefactory.sandbox import instances as local

    assert made.key is not None
    made.local = True
    spec_here = local.LocalSpec(made.instance, plan.content, plan.user, made.key.public_key,
                                int(spec.tags[AUTOSTOP_TAG]))
    booted = local.create(local.data_home(target), spec_here, progress)
    known = Path.home() / ".ssh" / "imagefactory-known-hosts" / made.instance
    known.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    known.write_text("".join(f"{made.instance} {line}\n" for line in booted.host_keys))
    return "127.0.0.1", booted.ssh_port, booted.jupyter_port


def _created(made: _Made) -> tuple[str, ...]:
    assert made.key is not None
    items = (made.key.created_remote and f"key pair {made.key.name}",
             made.key.created_local and f"key file {made.key.path}",
             made.group and f"security group {made.group}")
    return tuple(x for x in items if x)


def _owner(target: Target) -> str:
    try:
        return str(target.client("sts", "us-east-1").get_caller_identity()["Arn"])
    except Exception:  # no STS permission: fall back to the local user name
        import getpass

        return getpass.getuser()


def _rollback(target: Target, region: str, made: _Made, progress: Progress) -> None:
    """Remove what this launch made, newest first; report (never raise) what could not be removed."""
    steps: list[tuple[str, Any]] = []
    if made.instance:
        steps.append((f"instance {made.instance}", lambda: _drop_instance(target, region, made)))
    if made.group:
        steps.append((f"security group {made.group}", lambda: access.delete_security_group(target, region, made.group)))
    if made.key and (made.key.created_remote or made.key.created_local):
        steps.append((f"key pair {made.key.name}", lambda: access.delete_key_pair(target, region, made.key)))
    for what, step in steps:
        try:
            step()
            progress(f"cleanup: removed {what}")
        except Exception as exc:  # keep going: the others still need removing
            progress(f"cleanup: could not remove {what}: {type(exc).__name__}: {exc}")


def _drop_instance(target: Target, region: str, made: _Made) -> None:
    assert made.instance is not None
    if made.local:
        from imagefactory.sandbox import instances as local

        local.remove(local.data_home(target), made.instance)
    ec2.change_state(target, region, made.instance, "terminate")
    if made.group and not target.sandbox:
        ec2.wait_state(target, region, made.instance, "terminated", ec2.RUN_TIMEOUT)

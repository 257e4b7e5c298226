"""What a launch is, decided before anything is made: the options and their checks, which build and AMI,
the user data, the commands a person types, and the result with its summary. Pure: no cloud call.

    check_options(opts)                            instance type, ssh source, port, volume, autostop
    choose(entry, region, order)  -> Choice        which build and AMI (an image of the catalog)
    by_ami(image, region)         -> AmiChoice     an AMI named by its ID (no home, no catalog: students)
    summary(result)               -> str           how to get in, what it costs, how to stop paying
"""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from imagefactory import pricing
from imagefactory.catalog import Build, ImageEntry
from imagefactory.cloud import access
from imagefactory.cloud import instances as ec2
from imagefactory.errors import CatalogError, CloudError, UsageError
from imagefactory.tags import BUILD_ID_TAG, IMAGE_TAG
from imagefactory.tags import JUPYTER_PORT_TAG as PORT_TAG  # the names launch_plan's readers know them by
from imagefactory.tags import LOGIN_USER_TAG as USER_TAG

DEFAULT_TYPE = "t3.medium"
DEFAULT_AUTOSTOP = 60
AMI_RE = re.compile(r"ami-(?:[0-9a-f]{8}|[0-9a-f]{17})")
# the image contract's defaults (recipe.model ImageSpec.login_user, JupyterSpec.port), for an AMI without our tags
CONTRACT_USER = "ubuntu"
CONTRACT_JUPYTER_PORT = 8889


@dataclass(frozen=True)
class LaunchOptions:
    name: str                    # a catalog image; "" when `ami` names the image instead
    region: str | None = None
    instance_type: str = DEFAULT_TYPE
    spot: bool = False
    autostop: int = DEFAULT_AUTOSTOP
    volume: int | None = None
    key: str | None = None
    cidr: str | None = None
    allow_wide_cidr: bool = False  # --allow-wide-cidr: a --cidr wider than a /24 (IPv6 /56)
    local_port: int = 7005
    sandbox: bool = False
    wait: bool = True
    ami: str | None = None       # --ami: launch this AMI, no catalog needed (needs `region`)


@dataclass(frozen=True)
class Choice:
    image: str
    build_id: str
    region: str
    ami: str


@dataclass(frozen=True)
class AmiChoice:
    """An AMI named by its ID, with what the catalog and recipe would have told: its login user and
    JupyterLab port (from its tags, else the image contract's defaults, and a note saying so)."""

    choice: Choice
    user: str
    jupyter_port: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LaunchResult:
    instance_id: str
    image: str
    build_id: str
    ami: str
    region: str
    target: str
    instance_type: str
    spot: bool
    host: str
    ssh_port: int
    user: str
    key_path: str
    key_name: str
    security_group: str
    cidr: str
    local_port: int
    jupyter_port: int
    autostop_minutes: int
    volume_gb: int
    ssh_command: str
    tunnel_command: str
    price: dict[str, Any]
    disk_month_usd: float | None
    by_ami: bool = False         # launched by --ami: the next commands are imagefactory's, with --region
    created: tuple[str, ...] = ()
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_options(opts: LaunchOptions) -> None:
    ec2.check_instance_type(opts.instance_type)
    if opts.cidr is not None:
        access.check_cidr(opts.cidr, allow_wide=opts.allow_wide_cidr)
    if not 0 <= opts.autostop <= 7 * 24 * 60:
        raise CloudError(f"--autostop {opts.autostop} is out of range", "give idle minutes (0 turns auto-stop off)")
    if opts.volume is not None and not 1 <= opts.volume <= 16384:
        raise CloudError(f"--volume {opts.volume} GB is out of range", "give 1 to 16384 GB")
    if not 1024 <= opts.local_port <= 65535:
        raise CloudError(f"--local-port {opts.local_port} is out of range", "use a port from 1024 to 65535")
    if opts.ami is not None:
        if opts.name:
            raise UsageError(f"both an image name ({opts.name}) and --ami {opts.ami} were given",
                             "give one: an image of the catalog, or --ami AMI_ID --region R")
        if not AMI_RE.fullmatch(opts.ami):
            raise UsageError(f"--ami {opts.ami!r} is not an AMI ID", "give it as ami- and 8 or 17 hex digits")
        if opts.region is None:
            raise UsageError(f"--ami {opts.ami} needs --region", "an AMI exists only in one region: pass --region R")
    elif not opts.name:
        raise UsageError("no image to launch", "give an image name of the catalog, or --ami AMI_ID --region R")


def by_ami(image: dict[str, Any], region: str) -> AmiChoice:
    """The launch of one described AMI. Tags are visible only to the image's owner account, so an image
    shared with a student shows none: then the contract's defaults, said in a note."""
    tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
    ami = image["ImageId"]
    name = tags.get(IMAGE_TAG) or image.get("Name") or ami
    choice = Choice(name, tags.get(BUILD_ID_TAG, ""), region, ami)
    user, port = tags.get(USER_TAG), tags.get(PORT_TAG)
    notes: list[str] = []
    if not user or not port or not port.isdigit():
        notes.append(f"{ami} carries no {USER_TAG}/{PORT_TAG} tags (a shared image shows none to other accounts): "
                     f"assuming the image contract's login user {CONTRACT_USER!r} and JupyterLab port "
                     f"{CONTRACT_JUPYTER_PORT}")
    return AmiChoice(choice, user or CONTRACT_USER,
                     int(port) if port and port.isdigit() else CONTRACT_JUPYTER_PORT, tuple(notes))


def choose(entry: ImageEntry, region: str | None, order: tuple[str, ...] = ()) -> Choice:
    """The newest available build with an AMI in `region` (default: the latest build's first region)."""
    builds = sorted((b for b in entry.builds if b.status == "available" and b.amis),
                    key=lambda b: b.created, reverse=True)
    if not builds:
        raise CatalogError(f"image {entry.name!r} has no available build", f"bake it: invoke bake --repo {entry.name}")
    if region is None:
        latest = entry.latest_build() or builds[0]
        region = next((r for r in order if r in latest.amis), next(iter(latest.amis)))
        return Choice(entry.name, latest.id, region, latest.amis[region])
    build: Build | None = next((b for b in builds if region in b.amis), None)
    if build is None:
        where = sorted({r for b in builds for r in b.amis})
        raise CatalogError(f"image {entry.name!r} has no available build in {region}",
                           f"it exists in: {', '.join(where)}; pass --region, or bake with --regions")
    return Choice(entry.name, build.id, region, build.amis[region])


def user_data(autostop: int) -> str:
    """cloud-config writing the idle auto-stop setting that the image's idle timer reads (0: off)."""
    return ("#cloud-config\n"
            "write_files:\n"
            "  - path: /etc/imagefactory/autostop-minutes\n"
            "    permissions: '0644'\n"
            f"    content: \"{int(autostop)}\\n\"\n")


def commands(key: str, user: str, host: str, port: int, local_port: int, jupyter_port: int) -> tuple[str, str]:
    """The ssh command and the tunnel command a person would type."""
    base = ["ssh", "-i", key, *(["-p", str(port)] if port != ec2.SSH_PORT else [])]
    login = f"{user}@{host}"
    tunnel = [*base, "-N", "-L", f"{local_port}:localhost:{jupyter_port}", login]
    return shlex.join([*base, login]), shlex.join(tunnel)


def summary(r: LaunchResult) -> str:
    """What a person needs next: how to get in, what it costs, how to stop paying."""
    price = pricing.Price(**r.price)
    disk = f" (about ${r.disk_month_usd:.2f}/month)" if r.disk_month_usd is not None else ""
    autostop = f"after {r.autostop_minutes} idle minutes" if r.autostop_minutes else "off"
    what = f"{r.image} ({r.ami})" if r.by_ami else f"{r.image} build {r.build_id}"
    tool, where = ("imagefactory", f" --region {r.region}") if r.by_ami else ("invoke", "")
    return "\n".join([
        f"launched {r.instance_id}: {what} as {r.instance_type}"
        f"{' spot' if r.spot else ''} in {r.region} ({r.target}), ready in {r.seconds:.1f} s",
        f"  ssh:       {r.ssh_command}",
        f"  tunnel:    {r.tunnel_command}",
        f"  or:        {tool} connect {r.instance_id}{where} --local-port {r.local_port}  "
        "(tunnel + lab URL with token)",
        f"  price:     {price.text()}",
        f"  auto-stop: {autostop}",
        f"  Stop ({tool} stop {r.instance_id}{where}) keeps the {r.volume_gb} GB disk{disk}; "
        f"Terminate ({tool} terminate {r.instance_id}{where}) deletes it and ends all charges.",
        *(f"  note:      {n}" for n in r.notes),
    ])

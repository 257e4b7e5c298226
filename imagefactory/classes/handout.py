"""The students' handout: `handouts/NAME/index.html` and `handouts/NAME/README.md`, from the catalog only.

`gather` collects the facts (the class AMI per region from the share records, prices, what the image
holds); `render_html` and `render_markdown` are pure. Nothing of the roster but its title, term, regions and
suggestions is used: no label, no account id can reach a handout.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagefactory import catalog as catalog_mod
from imagefactory import pricing
from imagefactory.classes import record
from imagefactory.classes.roster import Roster
from imagefactory.cloud.target import Target
from imagefactory.errors import ClassError
from imagefactory.files import atomic_write

DISK_GIB = 30
KEY_PACKAGES = 12
CODE = ("aws ", "imagefactory ")  # paragraphs that are commands (indented as code in the README)
COMMANDS = (*CODE, "Open the tunnel", "Read the token")  # paragraphs shown as commands on the page


@dataclass(frozen=True)
class RegionFacts:
    region: str
    ami: str
    on_demand: float | None
    spot: float | None
    disk_month: float | None

    @property
    def console_link(self) -> str:
        return f"https://{self.region}.console.aws.amazon.com/ec2/home?region={self.region}#LaunchInstances:ami={self.ami}"


@dataclass(frozen=True)
class Facts:
    title: str
    image: str
    build: str
    term_start: str
    term_end: str
    instance_type: str
    autostop: int
    expected_hours: float
    repo: str
    commit: str
    python: str
    packages: tuple[str, ...]
    regions: tuple[RegionFacts, ...]
    user: str = "ubuntu"
    jupyter_port: int = 8889


def gather(target: Target, cat: catalog_mod.Catalog, image: str, roster: Roster) -> Facts:
    entry = cat.image(image)
    shared = [(b, record.shares_of(b, roster.name)) for b in entry.builds]
    shared = [(b, s) for b, s in shared if s]
    if not shared:
        raise ClassError(f"{image} is not shared with class {roster.name}",
                         f"share it first: invoke share {image} --class {roster.name}")
    build, records = shared[-1]
    table = pricing.load_table()
    regions = []
    for region in sorted(records):
        price = pricing.price(target, region, roster.instance_type, spot=True)
        spot = None if target.sandbox else price.spot  # the emulator's spot figures are not prices
        regions.append(RegionFacts(region, records[region]["ami"], price.on_demand, spot,
                                   pricing.disk_month(table, region, DISK_GIB)))
    manifest = build.image_manifest or {}
    packages = tuple(f"{p['name']} {p['version']}" for p in manifest.get("packages", [])[:KEY_PACKAGES])
    python = (manifest.get("python") or {}).get("version") or build.python or "the recipe's"
    return Facts(roster.title, image, build.id, str(roster.term_start), str(roster.term_end), roster.instance_type,
                 roster.autostop, roster.expected_hours, entry.repo, build.commit, str(python), packages,
                 tuple(regions), str(manifest.get("login_user") or "ubuntu"),
                 int((manifest.get("jupyter") or {}).get("port") or 8889))


def _money(value: float | None, digits: int = 4) -> str:
    return f"${value:.{digits}f}" if value is not None else "unknown"


def aws_command(facts: Facts, r: RegionFacts) -> str:
    return (f"aws ec2 run-instances --region {r.region} --image-id {r.ami} --instance-type {facts.instance_type} "
            "--key-name YOUR_KEY --security-group-ids YOUR_SG_SSH_FROM_YOUR_IP_ONLY "
            "--metadata-options HttpTokens=required --instance-initiated-shutdown-behavior stop")


def factory_command(facts: Facts, r: RegionFacts) -> str:
    """The one-line launch with imagefactory's safe defaults; it needs no factory home, only credentials."""
    return (f"imagefactory launch --ami {r.ami} --region {r.region} --type {facts.instance_type} "
            f"--autostop {facts.autostop}")


def _sections(facts: Facts) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs) in order; shared by both renderings (text is escaped by each)."""
    where = ", ".join(r.region for r in facts.regions)
    cost = [f"{r.region}: on demand {_money(r.on_demand)}/hour, spot {_money(r.spot)}/hour; "
            f"{facts.expected_hours:g} hours over the term ≈ "
            f"{_money(r.on_demand * facts.expected_hours if r.on_demand else None, 2)} on demand; a stopped "
            f"instance's {DISK_GIB} GiB disk ≈ {_money(r.disk_month, 2)}/month" for r in facts.regions]
    holds = [f"Python {facts.python}", f"the repository {facts.repo} at commit {facts.commit[:12]}",
             *([f"packages: {', '.join(facts.packages)}"] if facts.packages else [])]
    return [
        ("Where", [f"The image only exists in {where}: launch it there (another region will not find it).",
                   f"The term runs from {facts.term_start} to {facts.term_end}; the image is unshared after."]),
        ("Launch with imagefactory", [
            "pip install imagefactory, configure your AWS credentials (aws configure), then in any folder:",
            *(factory_command(facts, r) for r in facts.regions),
            "It makes the key pair (~/.ssh, private key never printed), lets ssh in from your address only, "
            "requires IMDSv2, encrypts the disk and prints the next commands; then, with the instance id it prints:",
            "imagefactory connect INSTANCE_ID --region REGION   # the tunnel and the JupyterLab URL with its token",
            "imagefactory stop INSTANCE_ID --region REGION      # or: imagefactory terminate INSTANCE_ID --region "
            "REGION"]),
        ("Launch with the AWS CLI", [aws_command(facts, r) for r in facts.regions]),
        ("Open JupyterLab", [f"Open the tunnel (leave it running): ssh -i YOUR_KEY.pem -N -L "
                             f"8888:localhost:{facts.jupyter_port} {facts.user}@PUBLIC_IP",
                             f"Read the token: ssh -i YOUR_KEY.pem {facts.user}@PUBLIC_IP cat "
                             ".jupyter/imagefactory-token", "Then open http://localhost:8888/lab?token=TOKEN "
                             "(it may take a minute or two after boot)."]),
        ("What the image holds", holds),
        ("What it costs", cost),
        ("Stop versus terminate", ["Stop keeps the disk (and your work) and costs only the disk; start it again "
                                   "later. Terminate deletes the instance and its disk for good.",
                                   f"Auto-stop: an idle instance stops itself after {facts.autostop} minutes."
                                   if facts.autostop else "Auto-stop is off: stop the instance when done."]),
    ]


def render_html(facts: Facts) -> str:
    esc = html.escape
    rows = "".join(f'<tr><td>{esc(r.region)}</td><td class="ami">{esc(r.ami)}</td><td><a class="launch" '
                   f'href="{esc(r.console_link)}">Launch in the console</a></td></tr>' for r in facts.regions)
    body = "".join(f"<h2>{esc(h)}</h2>" + "".join(f"<pre>{esc(p)}</pre>" if p.startswith(COMMANDS) else
                                                  f"<p>{esc(p)}</p>" for p in ps) for h, ps in _sections(facts))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(facts.title)}</title>'
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
            "pre{background:#f4f4f4;padding:.6em;white-space:pre-wrap}td{padding:.3em 1em}</style></head><body>"
            f"<h1>{esc(facts.title)}</h1><p>Image {esc(facts.image)}, build {esc(facts.build)}.</p>"
            f'<table id="amis"><tr><th>Region</th><th>AMI</th><th></th></tr>{rows}</table>{body}</body></html>\n')


def render_markdown(facts: Facts) -> str:
    lines = [f"# {facts.title}", "", f"Image {facts.image}, build {facts.build}.", "", "| Region | AMI | Launch |",
             "|---|---|---|", *(f"| {r.region} | `{r.ami}` | [console]({r.console_link}) |" for r in facts.regions)]
    for heading, paragraphs in _sections(facts):
        lines += ["", f"## {heading}", ""]
        lines += [f"    {p}" if p.startswith(CODE) else p for p in paragraphs]
    return "\n".join(lines) + "\n"


def write(root: Path, class_name: str, facts: Facts) -> dict[str, Any]:
    folder = root / "handouts" / class_name
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "index.html", render_html(facts))
    atomic_write(folder / "README.md", render_markdown(facts))
    return {"html": str(folder / "index.html"), "readme": str(folder / "README.md"),
            "amis": {r.region: r.ami for r in facts.regions}}

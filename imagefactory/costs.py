"""`invoke costs`: what the factory's resources cost per month now, per image and region, and what `prune`
would save.

Per image and region: the snapshot storage of every build (the sum of its AMIs' snapshot sizes, its class
copies' (`share` with a `kms_key`), and the snapshots a retired build left, priced per GB-month), each
instance launched from one of its AMIs that is running (its hourly price × 730, and its volumes) or stopped
(its volumes). Prices come from `pricing`: the bundled, dated table (`data/prices.json`) and, on AWS, the
Pricing API; a price it does not have is "unknown", never guessed, and is left out of the total (which
says how many are). What `prune` would save is
the snapshot storage of the AMIs its plan (`imagefactory.retention`, the recipes' rules, now) deregisters.
A snapshot is priced at its full volume size: AWS bills the blocks it holds, so this is an upper bound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from imagefactory import catalog as catalog_mod
from imagefactory import pricing, retention
from imagefactory.cloud import image_usage
from imagefactory.cloud.target import SANDBOX_NOTICE, Target, choose_target, open_target
from imagefactory.home import Home
from imagefactory.prune import plan


@dataclass(frozen=True)
class Cost:
    image: str
    region: str
    item: str                  # what is billed: "snapshots of build B", "i-… running t3.micro", …
    gib: int | None
    monthly: float | None      # USD per month; None: price unknown
    source: str

    def row(self) -> tuple[str, ...]:
        money = f"{self.monthly:.2f}" if self.monthly is not None else "unknown"
        return (self.image, self.region, self.item, "-" if self.gib is None else str(self.gib), money)


@dataclass(frozen=True)
class CostReport:
    target: str
    costs: tuple[Cost, ...]
    saving: float | None       # what prune would save per month (None: a price it needs is unknown)
    retiring: tuple[str, ...]  # region:AMI that prune would deregister
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> float:
        return round(sum(c.monthly for c in self.costs if c.monthly is not None), 2)

    @property
    def unknown(self) -> int:
        return sum(c.monthly is None for c in self.costs)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "costs": [asdict(c) for c in self.costs], "total_monthly": self.total,
                "unknown": self.unknown, "prune_saves_monthly": self.saving, "prune_retires": list(self.retiring),
                "currency": "USD", "notes": list(self.notes)}

    def text(self) -> str:
        rows = [("IMAGE", "REGION", "WHAT", "GB", "$/MONTH"), *(c.row() for c in self.costs)]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(v.ljust(w) if i < 4 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
                 .rstrip() for r in rows]
        unknown = f" ({self.unknown} unknown, not counted)" if self.unknown else ""
        lines.append(f"total: ${self.total:.2f}/month{unknown}")
        if not self.retiring:
            lines.append("prune would retire nothing now")
        else:
            saving = f"${self.saving:.2f}/month" if self.saving is not None else "an unknown amount"
            lines.append(f"prune would save {saving}: deregistering {', '.join(self.retiring)} and their snapshots")
        lines += list(self.notes)
        return "\n".join(lines)


def _snapshot_cost(table: dict[str, Any], image: str, region: str, item: str, gib: int) -> Cost:
    monthly = pricing.snapshot_month(table, region, gib)
    return Cost(image, region, item, gib, monthly, pricing.storage_source(table) if monthly is not None else "unknown")


def _instance_costs(target: Target, table: dict[str, Any], ec2: Any, image: str, region: str,
                    inst: dict[str, Any]) -> list[Cost]:
    volumes = image_usage.volume_sizes(ec2, inst)
    gib = sum(g for _, g in volumes)
    state, kind = inst["State"]["Name"], inst.get("InstanceType", "?")
    out = [Cost(image, region, f"{inst['InstanceId']} {state}: its volumes", gib,
                pricing.volumes_month(table, region, volumes), pricing.storage_source(table))]
    if state != "stopped":
        price = pricing.price(target, region, kind, spot=inst.get("InstanceLifecycle") == "spot")
        hourly = price.hourly(inst.get("InstanceLifecycle") == "spot")
        out.insert(0, Cost(image, region, f"{inst['InstanceId']} {state} {kind} (x {pricing.HOURS_PER_MONTH} h)",
                           None, pricing.running_month(hourly), price.source))
    return out


def costs(home: Home, *, sandbox: bool = False, now: datetime | None = None,
          progress: Callable[[str], None] = lambda _l: None) -> CostReport:
    now = now or datetime.now(UTC)
    target = open_target(choose_target(sandbox=sandbox), home.emulator_dir)
    if target.sandbox:
        progress(SANDBOX_NOTICE.format(endpoint=target.endpoint, catalog=home.catalog_path("sandbox")))
    table = pricing.load_table()
    cat = catalog_mod.load(home.catalog_path(target.kind))
    out: list[Cost] = []
    sizes: dict[str, int] = {}  # AMI -> GiB of its snapshots
    for name in sorted(cat.images):
        entry = cat.images[name]
        regions = sorted({r for b in entry.builds for r in (*b.amis, *b.snapshots_left)})
        for region in regions:
            ec2 = target.client("ec2", region)
            for build in entry.builds:
                ami = build.amis.get(region)
                found = image_usage.image_or_none(ec2, ami) if ami else None
                snaps = (*(image_usage.snapshots_of(found) if found else ()), *build.snapshots_left.get(region, ()))
                gib = sum(image_usage.snapshot_sizes(ec2, snaps).values())
                if ami:
                    sizes[ami] = gib
                if snaps:
                    out.append(_snapshot_cost(table, name, region, f"snapshots of build {build.id}", gib))
                for share in (s for s in build.shares if s.get("copied") and s["region"] == region):
                    copy = image_usage.image_or_none(ec2, share["ami"])
                    if copy is not None:
                        held = sum(image_usage.snapshot_sizes(ec2, image_usage.snapshots_of(copy)).values())
                        out.append(_snapshot_cost(table, name, region,
                                                  f"snapshots of class {share['class']}'s copy of {build.id}", held))
            amis = [b.amis[region] for b in entry.builds if region in b.amis]
            for inst in image_usage.instances_of(ec2, amis):
                out += _instance_costs(target, table, ec2, name, region, inst)
    retire = [(p.image, s) for p in plan(home, target, cat, (), keep=None, older_than=None, now=now)
              for _b, s in retention.retiring(p)]
    saved = [pricing.snapshot_month(table, s.region, sizes.get(s.ami or "", 0)) for _i, s in retire]
    saving = None if any(v is None for v in saved) else round(sum(v for v in saved if v is not None), 2)
    notes = ["prices: USD, bundled table; snapshots priced at their full size (AWS bills the blocks they hold: "
             "at most this)"]
    if target.sandbox:
        notes.append("sandbox: nothing is billed; these are AWS's prices for the same resources")
    return CostReport(target.kind, tuple(out), saving, tuple(f"{s.region}:{s.ami}" for _i, s in retire), tuple(notes))

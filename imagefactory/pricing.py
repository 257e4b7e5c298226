"""What an instance costs: the on-demand price per hour, the current spot price, and cost so far.

On-demand prices come from the AWS Pricing API when it answers (bounded: one try, short timeouts), else
from the bundled table `data/prices.json` (common types in common regions, with the date it was
compiled). The sandbox emulator does not serve the Pricing API, so there the table is the answer. Spot
prices come from DescribeSpotPriceHistory. A type the table does not hold and the API does not answer
for is "price unknown": never a guessed number.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from imagefactory.cloud.target import Target

TABLE_PATH = Path(__file__).resolve().parent / "data" / "prices.json"
PRICING_REGION = "us-east-1"  # the Pricing API's own endpoint region
_FILTERS = (("operatingSystem", "Linux"), ("tenancy", "Shared"), ("preInstalledSw", "NA"),
            ("capacitystatus", "Used"), ("licenseModel", "No License required"))
HOURS_PER_MONTH = 730


@dataclass(frozen=True)
class Price:
    """The hourly prices of one instance type in one region, and where each figure came from."""

    instance_type: str
    region: str
    on_demand: float | None
    source: str                     # "pricing-api", "bundled table (compiled YYYY-MM-DD)" or "unknown"
    spot: float | None = None
    spot_source: str | None = None  # "spot price history", "sandbox emulator (not a real price)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hourly(self, spot: bool) -> float | None:
        """The rate this instance is billed at: the spot price for a spot instance when known."""
        return self.spot if spot and self.spot is not None else self.on_demand

    def text(self) -> str:
        if self.on_demand is None:
            line = f"{self.instance_type} in {self.region}: price unknown (not in the bundled table)"
        else:
            line = f"{self.instance_type} in {self.region}: ${self.on_demand:.4f}/hour on demand ({self.source})"
        if self.spot is not None:
            line += f"; spot now ${self.spot:.4f}/hour ({self.spot_source})"
        elif self.spot_source:
            line += f"; spot price unknown ({self.spot_source})"
        return line


@lru_cache(maxsize=1)
def load_table(path: Path = TABLE_PATH) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def table_price(table: dict[str, Any], region: str, instance_type: str) -> float | None:
    value = table.get("on_demand", {}).get(region, {}).get(instance_type)
    return float(value) if value is not None else None


def table_source(table: dict[str, Any]) -> str:
    return f"bundled table (compiled {table.get('compiled', '?')})"


def disk_month(table: dict[str, Any], region: str, gib: int) -> float | None:
    """The monthly cost of a gp3 root volume of `gib` GiB (what a stopped instance still costs)."""
    rate = table.get("ebs_gp3_gb_month", {}).get(region)
    return round(float(rate) * gib, 2) if rate is not None else None


def volumes_month(table: dict[str, Any], region: str, volumes: Iterable[tuple[str, int]]) -> float | None:
    """The monthly cost of EBS volumes, (volume type, GiB) each: gp3 at the table's rate; any other type is
    unknown (the factory launches gp3; the table holds no other rate), as is a region the table lacks."""
    items = list(volumes)
    if any(kind != "gp3" for kind, _ in items):
        return None
    costs = [disk_month(table, region, gib) for _, gib in items]
    return None if any(c is None for c in costs) else round(sum(c for c in costs if c is not None), 2)


def running_month(hourly: float | None) -> float | None:
    """What an instance billed at `hourly` costs a month running around the clock (HOURS_PER_MONTH hours)."""
    return None if hourly is None else round(hourly * HOURS_PER_MONTH, 2)


def snapshot_month(table: dict[str, Any], region: str, gib: float) -> float | None:
    """The monthly cost of `gib` GiB of EBS snapshots (standard tier), or None when the table has no rate."""
    rate = table.get("ebs_snapshot_gb_month", {}).get(region)
    return round(float(rate) * gib, 2) if rate is not None else None


def storage_source(table: dict[str, Any]) -> str:
    return f"bundled table (EBS prices compiled {table.get('ebs_compiled', table.get('compiled', '?'))})"


def image_storage(table: dict[str, Any], used_bytes: int, regions: list[str]) -> str:
    """One line: the image's used size and what storing its snapshots (about its used bytes, once per
    region its AMI is in) costs a month, from the table's snapshot rates."""
    gib = used_bytes / 2**30
    costs = {region: snapshot_month(table, region, gib) for region in regions}
    known = [c for c in costs.values() if c is not None]
    each = ", ".join(f"{r} ${c:.2f}" if c is not None else f"{r} price unknown" for r, c in costs.items())
    total = f"about ${sum(known):.2f}/month" if known else "an unknown amount"
    return f"image: {gib:.2f} GiB used; storing it costs {total} ({each}; EBS snapshots, {storage_source(table)})"


def parse_products(price_list: list[str]) -> float | None:
    """The USD on-demand hourly price out of a GetProducts answer (JSON strings), or None."""
    for item in price_list:
        product = json.loads(item) if isinstance(item, str) else item
        for term in product.get("terms", {}).get("OnDemand", {}).values():
            for dimension in term.get("priceDimensions", {}).values():
                usd = dimension.get("pricePerUnit", {}).get("USD")
                if dimension.get("unit", "Hrs").startswith("Hr") and usd and float(usd) > 0:
                    return float(usd)
    return None


def spot_from_history(history: list[dict[str, Any]]) -> float | None:
    """The lowest current price over availability zones: the newest entry of each zone, then the minimum."""
    newest: dict[str, dict[str, Any]] = {}
    for entry in history:
        zone = entry.get("AvailabilityZone", "")
        if zone not in newest or entry["Timestamp"] > newest[zone]["Timestamp"]:
            newest[zone] = entry
    prices = [float(e["SpotPrice"]) for e in newest.values() if e.get("SpotPrice")]
    return min(prices) if prices else None


def cost_so_far(hourly: float | None, seconds: float) -> float | None:
    return None if hourly is None else round(hourly * max(seconds, 0.0) / 3600.0, 4)


def _client_config() -> Any:
    from botocore.config import Config

    return Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 1})


def api_price(target: Target, region: str, instance_type: str) -> float | None:
    """The Pricing API's answer, or None when it does not answer (the sandbox, no permission, offline)."""
    if target.sandbox:
        return None
    import boto3

    try:
        client = boto3.client("pricing", region_name=PRICING_REGION, config=_client_config())
        filters = [{"Type": "TERM_MATCH", "Field": k, "Value": v}
                   for k, v in (("instanceType", instance_type), ("regionCode", region), *_FILTERS)]
        answer = client.get_products(ServiceCode="AmazonEC2", Filters=filters, MaxResults=10)
        return parse_products(answer.get("PriceList", []))
    except Exception:  # any failure (no permission, timeout, offline) means: use the bundled table
        return None


def spot_price(target: Target, region: str, instance_type: str) -> tuple[float | None, str]:
    """The current spot price in `region`, and its source (the emulator's figures are not real prices)."""
    source = "sandbox emulator, not a real price" if target.sandbox else "spot price history"
    try:
        ec2 = target.client("ec2", region)
        answer = ec2.describe_spot_price_history(
            InstanceTypes=[instance_type], ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
            StartTime=datetime.now(UTC), MaxResults=50)
    except Exception:  # the API did not answer: say unknown rather than guess
        return None, "spot price history did not answer"
    return spot_from_history(answer.get("SpotPriceHistory", [])), source


def price(target: Target, region: str, instance_type: str, *, spot: bool = False) -> Price:
    table = load_table()
    value = api_price(target, region, instance_type)
    source = "pricing-api"
    if value is None:
        value = table_price(table, region, instance_type)
        source = table_source(table) if value is not None else "unknown"
    if not spot:
        return Price(instance_type, region, value, source)
    spot_value, spot_source = spot_price(target, region, instance_type)
    return Price(instance_type, region, value, source, spot_value, spot_source)

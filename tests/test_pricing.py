"""Prices: the bundled table, the Pricing API fallback (the emulator does not serve it), spot history."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imagefactory import pricing
from imagefactory.cloud.target import Target
from imagefactory.home import Home
from imagefactory.sandbox.emulator import SANDBOX_ACCOUNT_ID, ensure_up, sandbox_credentials

COMMON = ("t3.micro", "t3.medium", "t3.large", "m5.large", "m5.xlarge", "c5.large", "c5.xlarge", "r5.large",
          "g4dn.xlarge")


def test_bundled_table_has_common_types_a_date_and_only_positive_prices() -> None:
    table = pricing.load_table()
    assert datetime.strptime(table["compiled"], "%Y-%m-%d")
    for region in ("us-east-1", "us-east-2", "us-west-2", "eu-west-1"):
        for kind in COMMON:
            assert pricing.table_price(table, region, kind) > 0, (region, kind)
    assert all(v > 0 for prices in table["on_demand"].values() for v in prices.values())
    assert pricing.table_price(table, "us-west-2", "t3.medium") == 0.0416


def test_unknown_type_or_region_is_price_unknown_never_a_number() -> None:
    table = pricing.load_table()
    assert pricing.table_price(table, "us-west-2", "x9.huge") is None
    assert pricing.table_price(table, "ap-nowhere-1", "t3.micro") is None
    text = pricing.Price("x9.huge", "us-west-2", None, "unknown").text()
    assert "price unknown" in text and "$" not in text


def test_pricing_api_answer_is_parsed() -> None:
    product = {"product": {"attributes": {"instanceType": "t3.medium"}}, "terms": {"OnDemand": {"X.Y": {
        "priceDimensions": {"X.Y.Z": {"unit": "Hrs", "pricePerUnit": {"USD": "0.0416000000"}}}}}}}
    assert pricing.parse_products([json.dumps(product)]) == 0.0416
    assert pricing.parse_products([]) is None


def test_spot_history_takes_the_newest_entry_per_zone_then_the_lowest() -> None:
    now = datetime.now(UTC)
    old, new = now - timedelta(hours=2), now
    history = [{"AvailabilityZone": "a", "SpotPrice": "0.001", "Timestamp": old},
               {"AvailabilityZone": "a", "SpotPrice": "0.020", "Timestamp": new},
               {"AvailabilityZone": "b", "SpotPrice": "0.015", "Timestamp": new}]
    assert pricing.spot_from_history(history) == 0.015
    assert pricing.spot_from_history([]) is None


def test_cost_so_far_and_disk_cost() -> None:
    assert pricing.cost_so_far(0.0416, 3600 * 2) == 0.0832
    assert pricing.cost_so_far(None, 3600) is None
    assert pricing.disk_month(pricing.load_table(), "us-west-2", 30) == 2.4


def test_monthly_costs_of_volumes_and_a_running_instance() -> None:
    table = pricing.load_table()
    assert pricing.volumes_month(table, "us-west-2", [("gp3", 30), ("gp3", 10)]) == 3.2
    assert pricing.volumes_month(table, "us-west-2", [("gp3", 30), ("io2", 10)]) is None, "unknown, not gp3's rate"
    assert pricing.volumes_month(table, "ap-south-2", [("gp3", 30)]) is None, "unknown, not guessed"
    assert pricing.running_month(0.0104) == 7.59
    assert pricing.running_month(None) is None


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Target]:
    home = Home(tmp_path)
    info = ensure_up(home.emulator_dir)
    yield Target("sandbox", SANDBOX_ACCOUNT_ID, info.endpoint, sandbox_credentials())
    from conftest import stop_emulator

    stop_emulator(home)


def test_pricing_api_that_does_not_answer_falls_back_to_the_table_quickly(
        emulator: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    # An "aws" target whose endpoints are the emulator: the real Pricing API call is made, and fails.
    for key, value in {**sandbox_credentials(), "AWS_ENDPOINT_URL": emulator.endpoint}.items():
        monkeypatch.setenv(key, value)
    aws_like = Target("aws", SANDBOX_ACCOUNT_ID)
    started = time.monotonic()
    assert pricing.api_price(aws_like, "us-west-2", "t3.medium") is None
    found = pricing.price(aws_like, "us-west-2", "t3.medium")
    assert time.monotonic() - started < 15
    assert found.on_demand == 0.0416 and found.source.startswith("bundled table (compiled ")
    assert pricing.price(aws_like, "us-west-2", "x1e.32xlarge").source == "unknown"


def test_spot_price_comes_from_the_spot_price_history(emulator: Target) -> None:
    found = pricing.price(emulator, "us-west-2", "t3.medium", spot=True)
    assert found.spot is not None and found.spot > 0
    assert "not a real price" in (found.spot_source or "")
    assert found.hourly(spot=True) == found.spot and found.hourly(spot=False) == 0.0416

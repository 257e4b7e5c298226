"""`invoke costs` in the sandbox: two API-only bakes and two instances, real boto3 against the real emulator.
Snapshot storage matches the snapshots' sizes, instances are priced from the bundled table, and what prune
would save is the storage of the build its plan retires."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import commit_repo, new_home, run_cli, stop_emulator

from imagefactory import catalog, pricing
from imagefactory.classes import roster as rosters
from imagefactory.classes.share import converge
from imagefactory.cloud.target import open_target
from imagefactory.costs import costs
from imagefactory.home import Home
from imagefactory.sandbox.org import CLASS_KEY_ALIAS, STUDENTS

REGION = "us-west-2"


def test_the_table_prices_ebs_storage_per_region_with_its_date_and_source() -> None:
    table = pricing.load_table()
    assert table["ebs_compiled"] == "2026-12-02" and "Amazon EBS" in table["ebs_note"]
    assert set(table["ebs_snapshot_gb_month"]) == set(table["ebs_gp3_gb_month"]) == set(table["on_demand"])
    assert pricing.snapshot_month(table, "us-west-2", 30) == 1.5
    assert pricing.snapshot_month(table, "ap-south-2", 30) is None, "unknown, not guessed"


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Home, list[str]]]:
    root = tmp_path_factory.mktemp("costs")
    repo = commit_repo(root / "repos" / "hydro", {"requirements.txt": "six==1.16.0\n"})
    h = new_home(root / "home")
    for _ in range(2):
        run_cli(h, "bake", "--api-only", "--repo", repo.as_uri(), "--regions", REGION, check=True)
    recipe = h.recipe_path("hydro")
    recipe.write_text(recipe.read_text() + "lifecycle:\n  keep: 1\n")
    today = datetime.now(UTC).date()
    doc = rosters.new_document(title="Hydrology", regions=(REGION,), accounts=[{"id": STUDENTS[0]}], start=today,
                               end=today + timedelta(days=30), kms_key=CLASS_KEY_ALIAS)
    converge(open_target("sandbox", h.emulator_dir), h.catalog_path("sandbox"), "hydro",
             rosters.write_new(h.root, "hydro-101", doc, force=True))  # a class copy of the latest build
    yield h, [b.id for b in catalog.load(h.catalog_path("sandbox")).image("hydro").builds]
    stop_emulator(h)


def snapshot_gib(ec2: Any, ami: str) -> int:
    (image,) = ec2.describe_images(ImageIds=[ami])["Images"]
    snaps = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"]]
    return sum(s["VolumeSize"] for s in ec2.describe_snapshots(SnapshotIds=snaps)["Snapshots"])


def test_costs_match_the_snapshots_and_instances_and_say_what_prune_saves(two: tuple[Home, list[str]]) -> None:
    h, (old, new) = two
    ec2 = open_target("sandbox", h.emulator_dir).client("ec2", REGION)
    amis = {b.id: b.amis[REGION] for b in catalog.load(h.catalog_path("sandbox")).image("hydro").builds}
    disk = [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 20, "VolumeType": "gp3"}}]
    running, stopped = (ec2.run_instances(ImageId=amis[new], MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                          BlockDeviceMappings=disk)["Instances"][0]["InstanceId"] for _ in range(2))
    ec2.stop_instances(InstanceIds=[stopped])
    table = pricing.load_table()

    report = costs(h, now=datetime.now(UTC) + timedelta(days=200))
    got = {c.item: c for c in report.costs}
    for build in (old, new):
        gib = snapshot_gib(ec2, amis[build])
        line = got[f"snapshots of build {build}"]
        assert (line.gib, line.monthly) == (gib, round(gib * table["ebs_snapshot_gb_month"][REGION], 2))
    (share,) = catalog.load(h.catalog_path("sandbox")).image("hydro").build(new).shares  # type: ignore[union-attr]
    copy = got[f"snapshots of class hydro-101's copy of {new}"]
    assert (copy.gib, copy.monthly) == (snapshot_gib(ec2, share["ami"]), got[f"snapshots of build {new}"].monthly)
    hourly = table["on_demand"][REGION]["t3.micro"]
    assert got[f"{running} running t3.micro (x 730 h)"].monthly == round(hourly * 730, 2)
    stopped_disk = got[f"{stopped} stopped: its volumes"]
    assert (stopped_disk.gib, stopped_disk.monthly) == (20, round(20 * table["ebs_gp3_gb_month"][REGION], 2))
    assert f"{stopped} stopped t3.micro (x 730 h)" not in got, "a stopped instance costs only its volumes"
    assert report.total == round(sum(c.monthly for c in report.costs if c.monthly is not None), 2)
    assert report.retiring == (f"{REGION}:{amis[old]}",)
    assert report.saving == got[f"snapshots of build {old}"].monthly

    now = run_cli(h, "costs", "--json", check=True)
    data = json.loads(now.stdout)
    assert data["costs"] == [c.__dict__ for c in report.costs]
    assert (data["prune_retires"], data["prune_saves_monthly"]) == ([], 0), "nothing is old enough today"
    text = run_cli(h, "costs", check=True).stdout
    assert f"total: ${report.total:.2f}/month" in text and "prune would retire nothing now" in text

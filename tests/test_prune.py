"""`invoke prune` end to end in the sandbox: four API-only bakes of one repository, one shared with a class,
real boto3 against the real emulator. The plan keeps the right builds and says why; --yes deregisters the
oldest unprotected build's AMI and deletes its snapshot; a dry run and a second run change nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import commit_repo, new_home, run_cli, stop_emulator

from imagefactory import catalog
from imagefactory.classes import roster as rosters
from imagefactory.classes.share import converge
from imagefactory.cloud.target import open_target
from imagefactory.home import Home
from imagefactory.prune import prune
from imagefactory.sandbox.org import CLASS_KEY_ALIAS, STUDENTS

REGION = "us-west-2"


@pytest.fixture(scope="module")
def four(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Home, list[str]]]:
    """A home with four API-only bakes of one repository (build ids oldest first); the oldest is shared with a
    class whose term runs for another month. The tests below run in order on it, each from what the one
    before left (as successive prune runs would)."""
    root = tmp_path_factory.mktemp("prune")
    repo = commit_repo(root / "repos" / "hydro", {"requirements.txt": "six==1.16.0\n"})
    h = new_home(root / "home")
    for _ in range(4):
        run_cli(h, "bake", "--api-only", "--repo", repo.as_uri(), "--regions", REGION, check=True)
    ids = [b.id for b in catalog.load(h.catalog_path("sandbox")).image("hydro").builds]
    today = datetime.now(UTC).date()
    doc = rosters.new_document(title="Hydrology", regions=(REGION,), accounts=[{"id": STUDENTS[0]}], start=today,
                               end=today + timedelta(days=30), kms_key=CLASS_KEY_ALIAS)
    roster = rosters.write_new(h.root, "hydro-101", doc, force=True)
    converge(open_target("sandbox", h.emulator_dir), h.catalog_path("sandbox"), "hydro", roster, build_id=ids[0])
    yield h, ids
    stop_emulator(h)


def ec2(h: Home) -> Any:
    return open_target("sandbox", h.emulator_dir).client("ec2", REGION)


def image(h: Home, ami: str) -> dict[str, Any] | None:
    found = ec2(h).describe_images(Owners=["self"], Filters=[{"Name": "image-id", "Values": [ami]}])["Images"]
    return found[0] if found else None


def builds(h: Home) -> dict[str, catalog.Build]:
    return {b.id: b for b in catalog.load(h.catalog_path("sandbox")).image("hydro").builds}


def test_prune_keeps_the_right_three_says_why_and_retires_the_oldest_unprotected(four: tuple[Home, list[str]]) -> None:
    h, (b1, b2, b3, b4) = four
    path = h.catalog_path("sandbox")
    before = path.read_bytes()
    retired_ami = builds(h)[b2].amis[REGION]
    snapshot = image(h, retired_ami)["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]  # type: ignore[index]

    dry = run_cli(h, "prune", "--keep", "2", "--json", check=True)
    plan = {b["build"]: b for b in json.loads(dry.stdout)["images"][0]["builds"]}
    assert {k: (v["decision"], v["rule"]) for k, v in plan.items()} == {
        b4: ("keep", "the image's latest build"),
        b3: ("keep", "one of the 2 newest builds (lifecycle.keep)"),
        b2: ("retire", "0 days old, past delete_after_days (0)"),
        b1: ("keep", f"shared with class hydro-101, whose term ends {datetime.now(UTC).date() + timedelta(days=30)}"),
    }
    assert plan[b2]["regions"] == [{"region": REGION, "ami": retired_ami, "action": "deregister", "snapshots": []}]
    assert path.read_bytes() == before, "a dry run changes nothing"
    assert image(h, retired_ami) is not None

    done = run_cli(h, "prune", "--name", "hydro", "--keep", "2", "--yes", check=True)
    assert f"{b2} " in done.stdout and f"deregistered {retired_ami}; deleted snapshots {snapshot}" in done.stdout
    assert image(h, retired_ami) is None
    snaps = ec2(h).describe_snapshots(OwnerIds=["self"])["Snapshots"]
    assert snapshot not in {s["SnapshotId"] for s in snaps}
    for kept in (b1, b3, b4):
        assert image(h, builds(h)[kept].amis[REGION]) is not None
    gone = builds(h)[b2]
    assert (gone.status, gone.amis, gone.retired_amis) == ("retired", {}, {REGION: retired_ami})
    assert set(gone.deregistered_at) == {REGION}

    after = path.read_bytes()
    again = run_cli(h, "prune", "--keep", "2", "--yes", check=True)
    assert "nothing to change" in again.stdout
    assert path.read_bytes() == after, "a second run is idempotent"
    listing = run_cli(h, "catalog", "--json", check=True)
    assert json.loads(listing.stdout)[0]["failed"] == 0, "a retired build is not a failed one"


def test_instances_keep_a_build_and_an_old_one_is_deprecated(four: tuple[Home, list[str]]) -> None:
    h, (b1, _b2, b3, b4) = four
    recipe = h.recipe_path("hydro")
    recipe.write_text(recipe.read_text() + "lifecycle:\n  keep: 1\n  deprecate_after_days: 60\n")
    later = datetime.now(UTC) + timedelta(days=90)
    ami = builds(h)[b3].amis[REGION]
    instance = ec2(h).run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]
    ec2(h).stop_instances(InstanceIds=[instance["InstanceId"]])
    held = prune(h, apply=True, now=later)
    rules = {b.build: (b.decision, b.rule) for b in held.plans[0].builds}
    assert rules[b3] == ("keep", f"instances launched from it: {instance['InstanceId']}")
    assert rules[b4] == ("keep", "the image's latest build")
    assert rules[b1] == ("deprecate", "90 days old, past deprecate_after_days (60)"), "its class's term is over"
    assert [(o.build, o.action, o.ok) for o in held.outcomes] == [(b1, "deprecate", True)]

    ec2(h).terminate_instances(InstanceIds=[instance["InstanceId"]])
    report = prune(h, apply=True, now=later)
    assert [(o.build, o.action, o.ok) for o in report.outcomes] == [(b3, "deprecate", True)]
    at = (later + timedelta(minutes=1)).replace(second=0, microsecond=0)
    assert image(h, ami)["DeprecationTime"] == at.strftime("%Y-%m-%dT%H:%M:%S.000Z")  # type: ignore[index]
    assert builds(h)[b3].deprecated_at == {REGION: at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert prune(h, apply=True, now=later).outcomes == (), "recorded: not deprecated twice"


def test_a_region_that_fails_is_reported_and_retried_with_nothing_half_recorded(four: tuple[Home, list[str]]) -> None:
    h, (_b1, _b2, b3, _b4) = four
    path = h.catalog_path("sandbox")
    ami = builds(h)[b3].amis[REGION]
    snapshot = image(h, ami)["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]  # type: ignore[index]
    before = path.read_bytes()

    def emulator_stops(line: str) -> None:
        if line.startswith(f"prune: hydro {b3}"):
            stop_emulator(h)

    failed = prune(h, keep=1, apply=True, progress=emulator_stops)
    assert [(o.build, o.action, o.ok) for o in failed.outcomes] == [(b3, "deregister", False)]
    assert failed.outcomes[0].detail.startswith("EndpointConnectionError: "), failed.outcomes[0].detail
    assert path.read_bytes() == before, "nothing recorded for the region that failed"

    # the emulator is back (on demand); meanwhile the AMI went behind the factory's back (say, a run killed
    # right after DeregisterImage): the retry finds it gone, deletes its snapshot by the build's tag, records it
    ec2(h).deregister_image(ImageId=ami)
    retried = prune(h, keep=1, apply=True)
    assert [(o.build, o.action, o.ok) for o in retried.outcomes] == [(b3, "deregister", True)]
    assert f"{ami} was already gone; deleted snapshots {snapshot}" in retried.outcomes[0].detail
    record = builds(h)[b3]
    assert (record.status, record.amis, record.retired_amis) == ("retired", {}, {REGION: ami})
    assert snapshot not in {s["SnapshotId"] for s in ec2(h).describe_snapshots(OwnerIds=["self"])["Snapshots"]}

"""The janitor's pure plan: observations in, findings (with evidence and cost) and kept things (with reasons) out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from imagefactory import janitor as j
from imagefactory.pricing import load_table

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(hours=3)
YOUNG = NOW - timedelta(minutes=10)
MANAGED = {"managed-by": "imagefactory"}
BUILD = {**MANAGED, "imagefactory:role": "build", "imagefactory:build-id": "b1", "Name": "imagefactory build b1"}
R = "us-west-2"


def _packer_name(when: datetime) -> str:
    return f"packer_{int(when.timestamp()):08x}-1234-5678-9abc-def012345678"


def _instance(ident: str, tags: dict[str, str], *, when: datetime = OLD, state: str = "running",
              key: str | None = None, groups: tuple[str, ...] = (), image: str = "ami-base") -> j.Instance:
    return j.Instance(ident, state, "t3.medium", when, key, groups, image, (f"vol-{ident}",), tags)


def _ctx(**kw: object) -> j.Context:
    values: dict[str, object] = {"now": NOW, "recorded_amis": frozenset(), "prices": load_table()}
    values.update(kw)
    return j.Context(**values)  # type: ignore[arg-type]


def _ids(plan: j.RegionPlan) -> dict[str, str]:
    return {f.id: f.kind for f in plan.findings}


def _kept(plan: j.RegionPlan) -> dict[str, str]:
    return {k.id: k.reason for k in plan.kept}


def test_build_instances_older_than_an_hour_are_found_with_their_cost() -> None:
    scan = j.RegionScan(R, instances=(
        _instance("i-old", BUILD), _instance("i-young", BUILD, when=YOUNG),
        _instance("i-stopped", BUILD, state="stopped"),
        _instance("i-launched", {**MANAGED, "imagefactory:image": "demo"}),        # a launched instance
        _instance("i-role-only", {"imagefactory:role": "build"}),                  # not the factory's tag
        _instance("i-untagged", {})), volumes={"vol-i-old": ("gp3", 20), "vol-i-stopped": ("gp3", 10)})
    plan = j.plan_region(scan, _ctx())
    assert _ids(plan) == {"i-old": "build instance", "i-stopped": "build instance"}
    old = next(f for f in plan.findings if f.id == "i-old")
    assert old.monthly_usd == pytest.approx(round(0.0416 * 730 + 20 * 0.08, 2))
    assert old.cost == "t3.medium $0.0416/h x 730 h + 20 GiB of disks" and "build b1" in old.evidence
    assert old.age_seconds == pytest.approx(3 * 3600)
    stopped = next(f for f in plan.findings if f.id == "i-stopped")
    assert stopped.monthly_usd == pytest.approx(0.8) and "stopped" in stopped.cost
    assert _kept(plan) == {"i-young": "younger than 1 h (a bake may still be using it)"}


def test_packer_key_pairs_and_groups_used_by_no_instance() -> None:
    old, young = _packer_name(OLD), _packer_name(YOUNG)
    scan = j.RegionScan(R, instances=(_instance("i-user", {}, key="packer_used", groups=("sg-used",)),),
                        key_pairs=(j.KeyPair("packer_used", OLD, {}), j.KeyPair("packer_free", OLD, {}),
                                   j.KeyPair("packer_new", YOUNG, {}), j.KeyPair(old, None, {}),
                                   j.KeyPair("mykey", OLD, {})),
                        groups=(j.Group("sg-used", "packer_x", {}), j.Group("sg-free", old, {}),
                                j.Group("sg-new", young, {}), j.Group("sg-noname", "packer_nonsense", {}),
                                j.Group("sg-mine", "lab", {})))
    plan = j.plan_region(scan, _ctx())
    assert _ids(plan) == {"packer_free": "key pair", old: "key pair", "sg-free": "security group"}
    kept = _kept(plan)
    assert kept["packer_used"] == "used by i-user" and kept["sg-used"] == "used by i-user"
    assert kept["packer_new"].startswith("younger than 1 h") and kept["sg-new"].startswith("younger than 1 h")
    assert kept["sg-noname"] == "its age is unknown (a bake may still be using it)"
    assert "mykey" not in kept and "sg-mine" not in kept
    assert all(f.monthly_usd == 0.0 and f.cost == "no charge" for f in plan.findings)


def test_a_packer_group_used_only_by_an_abandoned_build_instance_goes_with_it() -> None:
    scan = j.RegionScan(R, instances=(_instance("i-b", BUILD, groups=("sg-p",)),),
                        groups=(j.Group("sg-p", _packer_name(OLD), {}),))
    assert _ids(j.plan_region(scan, _ctx())) == {"i-b": "build instance", "sg-p": "security group"}


def test_images_no_catalog_build_records_and_their_own_snapshots() -> None:
    images = (j.Image("ami-orphan", "imagefactory/demo/b2", OLD, ("snap-own", "snap-shared"), MANAGED),
              j.Image("ami-recorded", "imagefactory/demo/b1", OLD, ("snap-rec", "snap-shared"), MANAGED),
              j.Image("ami-young", "imagefactory/demo/b3", YOUNG, (), MANAGED),
              j.Image("ami-used", "imagefactory/demo/b4", OLD, (), MANAGED),
              j.Image("ami-theirs", "someone", OLD, ("snap-theirs",), {}))
    snaps = (j.Snapshot("snap-own", 30, OLD, MANAGED), j.Snapshot("snap-shared", 10, OLD, MANAGED),
             j.Snapshot("snap-rec", 8, OLD, MANAGED), j.Snapshot("snap-theirs", 8, OLD, {}),
             j.Snapshot("snap-loose", 12, OLD, MANAGED), j.Snapshot("snap-untagged-loose", 12, OLD, {}),
             j.Snapshot("snap-new", 12, YOUNG, MANAGED))
    users = {"snap-own": ("ami-orphan",), "snap-shared": ("ami-orphan", "ami-recorded"),
             "snap-rec": ("ami-recorded",), "snap-theirs": ("ami-theirs",)}
    scan = j.RegionScan(R, instances=(_instance("i-1", {}, image="ami-used"),), images=images, snapshots=snaps,
                        snapshot_users=users)
    plan = j.plan_region(scan, _ctx(recorded_amis=frozenset({(R, "ami-recorded"), ("us-east-2", "ami-used")})))
    assert _ids(plan) == {"ami-orphan": "image", "snap-loose": "snapshot"}
    orphan = next(f for f in plan.findings if f.id == "ami-orphan")
    assert orphan.snapshots == ("snap-own",)            # the shared one stays with the recorded AMI
    assert orphan.monthly_usd == pytest.approx(1.5) and orphan.cost == "30 GiB of snapshots"
    assert "recorded by no build in the catalog" in orphan.evidence
    kept = _kept(plan)
    assert kept["ami-used"] == "instances were launched from it: i-1"  # recorded in another region only
    assert kept["ami-young"].startswith("younger than 1 h") and kept["snap-new"].startswith("younger than 1 h")
    assert "ami-theirs" not in kept and "snap-untagged-loose" not in kept


def test_unknown_prices_are_unknown_not_guessed() -> None:
    scan = j.RegionScan("ap-south-2", instances=(_instance("i-b", BUILD),),
                        snapshots=(j.Snapshot("snap-l", 10, OLD, MANAGED),))
    plan = j.plan_region(scan, _ctx())
    assert [f.monthly_usd for f in plan.findings] == [None, None]
    assert all(f.cost.startswith("unknown:") for f in plan.findings)
    assert j.monthly_total(plan.findings) == (0.0, 2)


def test_the_sandbox_knows_exactly_which_builds_run_instead_of_waiting_an_hour() -> None:
    young_name = _packer_name(YOUNG)
    scan = j.RegionScan(R, instances=(_instance("i-b2", {**BUILD, "imagefactory:build-id": "b2"}, when=YOUNG),
                                      _instance("i-b1", BUILD, when=YOUNG)),
                        groups=(j.Group("sg-p", young_name, {}),),
                        images=(j.Image("ami-live", "x", YOUNG, (), {**MANAGED, "imagefactory:build-id": "b1"}),
                                j.Image("ami-dead", "y", YOUNG, (), {**MANAGED, "imagefactory:build-id": "b0"})))
    idle = j.plan_region(scan, _ctx(sandbox=True))
    assert set(_ids(idle)) == {"i-b2", "i-b1", "sg-p", "ami-live", "ami-dead"}
    busy = j.plan_region(scan, _ctx(sandbox=True, live_build_ids=frozenset({"b1"}), building=True))
    assert set(_ids(busy)) == {"i-b2", "ami-dead"}
    kept = _kept(busy)
    assert kept["i-b1"] == kept["ami-live"] == "its build b1 is running"
    assert kept["sg-p"] == "a sandbox build is running and this names no build"


def test_packer_name_time() -> None:
    assert j.packer_name_time(_packer_name(OLD)) == OLD
    assert j.packer_name_time("packer_zz") is None and j.packer_name_time("lab") is None


def test_merge_lists_a_thing_found_twice_once_in_removal_order() -> None:
    leftover = j.Finding("security group", R, "sg-1", "sg-1", "left by the dead sandbox build b1",
                         monthly_usd=0.0, cost="no charge (the emulator)", build_dir="/b/b1")
    root = j.Finding("rootfs", "", "/b/b1/rootfs", "/b/b1/rootfs", "left by b1", build_dir="/b/b1")
    plan = j.RegionPlan(R, findings=(
        j.Finding("security group", R, "sg-1", "packer_x", "Packer's naming, used by no instance", 7200.0, 0.0,
                  "no charge"),
        j.Finding("build instance", R, "i-1", "imagefactory build b1", "Packer's build instance", 7200.0, 30.0, "t3")))
    merged = j.merge([plan], [leftover, root])
    assert [(f.kind, f.id) for f in merged] == [("rootfs", "/b/b1/rootfs"), ("build instance", "i-1"),
                                                ("security group", "sg-1")]
    group = merged[2]
    assert group.build_dir == "/b/b1" and group.name == "packer_x"
    assert group.evidence == "left by the dead sandbox build b1; Packer's naming, used by no instance"


def test_a_build_of_this_home_running_here_is_kept_however_old() -> None:
    scan = j.RegionScan(R, instances=(_instance("i-long", BUILD, when=NOW - timedelta(hours=30)),),
                        images=(j.Image("ami-b1", "x", OLD, (), {**MANAGED, "imagefactory:build-id": "b1"}),))
    plan = j.plan_region(scan, _ctx(live_build_ids=frozenset({"b1"})))
    assert plan.findings == ()
    assert _kept(plan) == {"i-long": "its build b1 is running", "ami-b1": "its build b1 is running"}

"""The stale decision, pure: a build record and observations in, reasons out (no I/O here)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from imagefactory.catalog import Build
from imagefactory.recipe.model import Rebuild
from imagefactory.staleness import Facts, Seen, decide

NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
C1, C2 = "a" * 40, "b" * 40
BUILD = Build(id="b1", created="2026-11-30T06:00:00Z", status="available", target="sandbox", account="1",
              commit=C1, ref="main", recipe_digest="sha256:r1", amis={"us-east-2": "ami-x", "us-west-2": "ami-y"},
              base_ami={"us-east-2": "ami-base-e", "us-west-2": "ami-base-w"}, contract_digest="sha256:c1",
              image_manifest={"packages": [{"name": "Numpy", "version": "1.26.0"},
                                           {"name": "six", "version": "1.16.0"}]})
FRESH = Facts(commit=Seen(C1), recipe_digest=Seen("sha256:r1"),
              base_amis=Seen({"us-east-2": "ami-base-e", "us-west-2": "ami-base-w"}),
              contract_digest=Seen("sha256:c1"),
              packages=Seen(("numpy==1.26.0", "six==1.16.0")))
DEFAULTS = Rebuild()


def verdict(facts: Facts = FRESH, build: Build = BUILD, last: Build | None = None, rebuild: Rebuild = DEFAULTS):
    return decide("demo", build, last or build, facts, rebuild=rebuild, now=NOW)


def kinds(v) -> list[str]:
    return [r.kind for r in v.reasons]


def test_nothing_changed_is_fresh() -> None:
    v = verdict()
    assert (v.status, v.reasons, v.unknown, v.incremental) == ("fresh", (), (), False)


def test_only_the_commit_moved_is_incremental() -> None:
    v = verdict(replace(FRESH, commit=Seen(C2)))
    assert v.status == "stale" and v.incremental
    assert [(r.kind, r.old, r.new) for r in v.reasons] == [("commit", C1, C2)]
    assert "commit moved" in v.reasons[0].detail
    assert v.to_dict()["reasons"][0] == {"kind": "commit", "old": C1, "new": C2, "detail": v.reasons[0].detail}


def test_every_reason_is_listed_with_its_evidence() -> None:
    facts = Facts(commit=Seen(C2), recipe_digest=Seen("sha256:r2"),
                  base_amis=Seen({"us-east-2": "ami-base-e", "us-west-2": "ami-newer"}),
                  contract_digest=Seen("sha256:c2"), packages=Seen(("numpy==2.0.0", "six==1.16.0", "pyyaml==6.0")))
    old = replace(BUILD, created="2026-10-01T00:00:00Z")
    v = verdict(facts, old)
    assert kinds(v) == ["commit", "recipe", "base-image", "contract", "packages", "packages", "age"]
    assert not v.incremental
    base = v.reasons[2]
    assert (base.old, base.new) == ("ami-base-w", "ami-newer") and "us-west-2" in base.detail
    assert [(r.old, r.new) for r in v.reasons if r.kind == "packages"] == [("numpy==1.26.0", "numpy==2.0.0"),
                                                                          (None, "pyyaml==6.0")]
    assert "62 days" in v.reasons[-1].detail and "max_age_days is 30" in v.reasons[-1].detail


def test_max_age_days_comes_from_the_recipe() -> None:
    assert kinds(verdict(rebuild=Rebuild(max_age_days=1))) == ["age"]
    assert kinds(verdict(rebuild=Rebuild(max_age_days=2))) == []


def test_an_observation_not_made_is_unknown_never_fresh() -> None:
    v = verdict(replace(FRESH, commit=Seen(error="git ls-remote: repository not found")))
    assert v.status == "unknown" and not v.incremental
    assert [u.to_dict() for u in v.unknown] == [{"kind": "commit", "detail": "git ls-remote: repository not found"}]


def test_unknown_does_not_hide_a_reason_and_forbids_incremental() -> None:
    v = verdict(replace(FRESH, commit=Seen(C2), base_amis=Seen(error="DescribeImages timed out")))
    assert v.status == "stale" and kinds(v) == ["commit"] and not v.incremental
    assert [u.kind for u in v.unknown] == ["base-image"]


def test_a_build_without_a_contract_digest_is_unknown_for_the_contract() -> None:
    v = verdict(build=replace(BUILD, contract_digest=None))
    assert [u.kind for u in v.unknown] == ["contract"] and v.status == "unknown"


def test_no_manifest_makes_packages_unknown_and_no_check_makes_nothing() -> None:
    assert [u.kind for u in verdict(build=replace(BUILD, image_manifest=None)).unknown] == ["packages"]
    assert verdict(replace(FRESH, packages=None), replace(BUILD, image_manifest=None)).status == "fresh"


def test_a_failed_last_build_is_a_reason() -> None:
    failed = replace(BUILD, id="b2", status="interrupted", error="cancelled by Ctrl-C during Packer's build")
    v = verdict(last=failed)
    assert [(r.kind, r.old, r.new) for r in v.reasons] == [("last-build", "b1", "b2")]
    assert "interrupted" in v.reasons[0].detail and not v.incremental


def test_no_available_build_at_all() -> None:
    failed = replace(BUILD, status="failed", error="packer build failed")
    v = decide("demo", None, failed, None, rebuild=Rebuild(), now=NOW)
    assert v.latest is None and kinds(v) == ["last-build", "no-build"] and v.status == "stale"

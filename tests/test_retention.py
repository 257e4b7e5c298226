"""The retention plan, pure: catalog entries, rules, a clock and protections in; decisions out. No I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from imagefactory.catalog import Build, ImageEntry
from imagefactory.recipe.model import Lifecycle
from imagefactory.retention import Protections, Rules, plan_image, retiring

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def build(n: int, days_old: float, **extra: object) -> Build:
    created = (NOW - timedelta(days=days_old)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = {"amis": {"us-west-2": f"ami-{n:04x}", "us-east-2": f"ami-{n + 100:04x}"}, **extra}
    return Build(id=f"b{n}", created=created, status="available", target="sandbox", account="1", commit="c",
                 ref=None, recipe_digest="d", **fields)  # type: ignore[arg-type]


def entry(*builds: Build, latest: str | None = None) -> ImageEntry:
    newest = max((b for b in builds if b.status == "available"), key=lambda b: b.created, default=None)
    return ImageEntry("img", "r", "recipes/img.yaml", "d", latest=latest or (newest.id if newest else None),
                      builds=builds)


def decisions(plan) -> dict[str, tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {b.build: (b.decision, b.rule) for b in plan.builds}


def test_defaults_keep_three_deprecate_at_sixty_days_and_retire_at_a_hundred_and_twenty() -> None:
    e = entry(build(1, 200), build(2, 90), build(3, 30), build(4, 20), build(5, 10), build(6, 1))
    plan = plan_image(e, Rules.of(Lifecycle()), NOW, Protections())
    got = decisions(plan)
    assert got["b6"] == ("keep", "the image's latest build")
    assert got["b5"][1] == got["b4"][1] == "one of the 3 newest builds (lifecycle.keep)"
    assert got["b3"] == ("keep", "30 days old, younger than deprecate_after_days (60)")
    assert got["b2"] == ("deprecate", "90 days old, past deprecate_after_days (60)")
    assert got["b1"] == ("retire", "200 days old, past delete_after_days (120)")
    steps = {b.build: [(s.region, s.action) for s in b.regions] for b in plan.builds}
    assert steps["b2"] == [("us-east-2", "deprecate"), ("us-west-2", "deprecate")]
    assert steps["b1"] == [("us-east-2", "deregister"), ("us-west-2", "deregister")]
    assert [(b, s.ami) for b, s in retiring(plan)] == [("b1", "ami-0065"), ("b1", "ami-0001")]
    assert [b.build for b in plan.builds] == ["b6", "b5", "b4", "b3", "b2", "b1"]


def test_keep_flag_retires_now_all_but_the_newest_and_older_than_overrides_the_age() -> None:
    e = entry(build(1, 3), build(2, 2), build(3, 1), build(4, 0))
    rules = Rules.of(Lifecycle()).overridden(keep=3)
    assert rules == Rules(3, 0, 0)
    got = decisions(plan_image(e, rules, NOW, Protections()))
    assert got["b1"][0] == "retire" and {got[b][0] for b in ("b2", "b3", "b4")} == {"keep"}
    older = Rules.of(Lifecycle()).overridden(older_than=2)
    assert older == Rules(3, 2, 2)
    assert decisions(plan_image(e, replace(older, keep=1), NOW, Protections()))["b3"][0] == "keep"
    assert decisions(plan_image(e, replace(older, keep=1), NOW, Protections()))["b2"][0] == "retire"
    assert Rules.of(Lifecycle()).overridden(keep=2, older_than=30) == Rules(2, 30, 30)


def test_shared_with_a_class_in_term_or_of_unknown_term_is_kept_and_after_the_term_it_goes() -> None:
    share = ({"class": "hydro-101", "region": "us-west-2", "ami": "ami-0001", "accounts": 3, "when": "x", "by": "y"},)
    e = entry(build(1, 300, shares=share), build(2, 1))
    rules = Rules(1, 60, 120)
    in_term = Protections(class_terms={"hydro-101": date(2026, 12, 20)})
    assert decisions(plan_image(e, rules, NOW, in_term))["b1"] == (
        "keep", "shared with class hydro-101, whose term ends 2026-12-20")
    assert decisions(plan_image(e, rules, NOW, Protections()))["b1"] == (
        "keep", "shared with class hydro-101, whose roster is not here (its term is unknown)")
    ended = Protections(class_terms={"hydro-101": date(2026, 11, 30)})
    assert decisions(plan_image(e, rules, NOW, ended))["b1"][0] == "retire"


def test_instances_or_an_unreadable_region_keep_a_build() -> None:
    e = entry(build(1, 300), build(2, 1))
    rules = Rules(1, 60, 120)
    running = Protections(instances={"ami-0065": ("i-1", "i-0")})
    assert decisions(plan_image(e, rules, NOW, running))["b1"] == ("keep", "instances launched from it: i-0, i-1")
    unread = Protections(unchecked={"us-east-2": "AccessDenied"})
    assert decisions(plan_image(e, rules, NOW, unread))["b1"] == (
        "keep", "its instances in us-east-2 could not be checked (AccessDenied)")


def test_the_parent_of_a_kept_incremental_build_is_kept_up_the_chain_but_not_of_a_retired_one() -> None:
    e = entry(build(1, 400), build(2, 300, parent_build="b1"), build(3, 200, parent_build="b2"), build(4, 1))
    rules = Rules(1, 60, 120)
    assert {b: d for b, (d, _) in decisions(plan_image(e, rules, NOW, Protections())).items()} == {
        "b4": "keep", "b3": "retire", "b2": "retire", "b1": "retire"}
    kept_child = Protections(instances={"ami-0003": ("i-9",)})
    got = decisions(plan_image(e, rules, NOW, kept_child))
    assert got["b3"] == ("keep", "instances launched from it: i-9")
    assert got["b2"] == ("keep", "the parent of incremental build b3, which is kept")
    assert got["b1"] == ("keep", "the parent of incremental build b2, which is kept")


def test_done_work_is_not_planned_again_and_left_snapshots_are_retried() -> None:
    deprecated = build(2, 90, deprecated_at={"us-west-2": "2026-11-01T00:00:00Z"})
    retired = replace(build(1, 200), status="retired", amis={}, retired_amis={"us-west-2": "ami-0001"},
                      deregistered_at={"us-west-2": "2026-11-01T00:00:00Z"}, snapshots_left={"us-west-2": ("snap-1",)})
    gone = replace(build(0, 300), status="retired", amis={})
    failed = replace(build(9, 5), status="failed", amis={})
    plan = plan_image(entry(gone, retired, deprecated, failed, build(3, 1)), Rules(1, 60, 120), NOW, Protections())
    steps = {b.build: [(s.region, s.action, s.snapshots) for s in b.regions] for b in plan.builds}
    assert steps == {"b3": [("us-east-2", "keep", ()), ("us-west-2", "keep", ())],
                     "b2": [("us-east-2", "deprecate", ()), ("us-west-2", "deprecated", ())],
                     "b1": [("us-west-2", "delete-snapshots", ("snap-1",))]}
    assert plan.changes
    settled = plan_image(entry(replace(deprecated, deprecated_at={"us-west-2": "x", "us-east-2": "y"}), build(3, 1)),
                         Rules(1, 60, 120), NOW, Protections())
    assert not settled.changes
    assert "b2 (" in "\n".join(settled.lines()) and "already deprecated" in "\n".join(settled.lines())


def test_a_recipes_lifecycle_is_validated_naming_the_field_and_leaves_the_digest_alone() -> None:
    import pytest

    from imagefactory.documents import load_yaml
    from imagefactory.errors import RecipeError
    from imagefactory.recipe.model import Recipe

    text = "name: img\nsource: {repo: r, commit: c}\n"
    plain = Recipe.from_dict(load_yaml(text, "recipes/img.yaml"), "recipes/img.yaml")
    assert plain.lifecycle == Lifecycle(3, 60, 120) and "lifecycle" not in plain.to_dict()
    ruled = Recipe.from_dict(load_yaml(text + "lifecycle: {keep: 5}\n", "r"), "recipes/img.yaml")
    assert ruled.lifecycle == Lifecycle(5, 60, 120) and ruled.to_dict()["lifecycle"]["keep"] == 5
    assert ruled.digest() == plain.digest(), "how long builds are kept is not what the image holds"
    assert Rules.of(ruled.lifecycle) == Rules(5, 60, 120)
    with pytest.raises(RecipeError) as err:
        Recipe.from_dict(load_yaml(text + "lifecycle:\n  deprecate_after_days: 90\n  delete_after_days: 30\n", "r"),
                         "recipes/img.yaml")
    assert str(err.value).startswith("recipes/img.yaml:5: field 'lifecycle.delete_after_days' is 30, before ")
    with pytest.raises(RecipeError) as err:
        Recipe.from_dict(load_yaml(text + "lifecycle: {keep: 0}\n", "r"), "recipes/img.yaml")
    assert "field 'lifecycle.keep'" in str(err.value)
    with pytest.raises(RecipeError) as err:
        Recipe.from_dict(load_yaml(text + "lifecycle: {kept: 2}\n", "r"), "recipes/img.yaml")
    assert "lifecycle" in str(err.value) and "kept" in str(err.value)


def test_the_record_drops_a_deregistered_ami_everywhere_and_retires_a_build_with_none_left() -> None:
    from imagefactory.catalog import Catalog, validate
    from imagefactory.retention import record_deprecated, record_deregistered, record_snapshots_left

    share = {"class": "c", "region": "us-west-2", "ami": "ami-0001", "accounts": 1, "when": "x", "by": "y"}
    copy = {**share, "ami": "ami-cccc", "copied": True}
    cat = Catalog(images={"img": entry(build(1, 200, shares=(share, copy)), build(2, 1))})
    cat = record_deprecated(cat, "img", "b1", "us-west-2", "2026-12-01T12:01:00Z")
    cat = record_deregistered(cat, "img", "b1", "us-west-2", "2026-12-01T12:02:00Z", ("snap-1",))
    b1 = cat.image("img").build("b1")
    assert b1 is not None
    assert (b1.status, b1.amis, b1.retired_amis) == ("available", {"us-east-2": "ami-0065"}, {"us-west-2": "ami-0001"})
    assert b1.shares == (copy,), "the class record of the AMI that is gone goes; its class copy stays"
    assert b1.snapshots_left == {"us-west-2": ("snap-1",)} and b1.deprecated_at == {"us-west-2": "2026-12-01T12:01:00Z"}
    cat = record_deregistered(cat, "img", "b1", "us-east-2", "2026-12-01T12:03:00Z", ())
    cat = record_snapshots_left(cat, "img", "b1", "us-west-2", ())
    b1 = cat.image("img").build("b1")
    assert b1 is not None and (b1.status, b1.amis, b1.snapshots_left) == ("retired", {}, {})
    assert Catalog.from_dict(validate(cat.to_dict(), "catalog.yaml")) == cat, "the schema takes it; it reads back"

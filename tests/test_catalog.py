"""Catalog: the model, latest pointers, atomic and locked writes under real concurrency."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from imagefactory import catalog
from imagefactory.catalog import Build, Catalog
from imagefactory.errors import CatalogError


def build(build_id: str, status: str = "available", target: str = "aws") -> Build:
    return Build(id=build_id, created="2026-11-27T00:00:00Z", status=status, target=target, account="1",
                 commit="abc", ref="main", recipe_digest="sha256:x", amis={"us-west-2": f"ami-{build_id}"})


def add(cat: Catalog, name: str, b: Build) -> Catalog:
    return catalog.record(cat, name=name, repo="r", recipe=f"recipes/{name}.yaml", recipe_digest="d", build=b)


def test_available_build_becomes_latest_failed_does_not() -> None:
    cat = add(Catalog(), "img", build("b1"))
    cat = add(cat, "img", build("b2", status="failed"))
    assert cat.images["img"].latest == "b1"
    assert [b.id for b in cat.images["img"].builds] == ["b1", "b2"]
    cat = add(cat, "img", build("b3"))
    assert cat.images["img"].latest_build().id == "b3"


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    catalog.update(path, lambda c: add(c, "img", build("b1")))
    loaded = catalog.load(path)
    assert loaded.images["img"].builds[0].amis == {"us-west-2": "ami-b1"}
    assert path.read_text().startswith("# imagefactory catalog")
    assert "catalog_version: 1" in path.read_text()


def test_a_failing_change_leaves_the_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    catalog.update(path, lambda c: add(c, "img", build("b1")))
    before = path.read_bytes()

    def explode(c: Catalog) -> Catalog:
        raise RuntimeError("crash mid-update")

    with pytest.raises(RuntimeError):
        catalog.update(path, explode)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".catalog.yaml.*.tmp"))


def _record_many(args: tuple[str, int]) -> None:
    path, worker = args
    for i in range(5):
        catalog.update(Path(path), lambda c, i=i: add(c, f"img{worker}", build(f"w{worker}-{i}")))


def test_concurrent_writers_all_land(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_record_many, [(str(path), w) for w in range(4)])
    cat = catalog.load(path)
    assert sorted(cat.images) == ["img0", "img1", "img2", "img3"]
    assert all(len(e.builds) == 5 for e in cat.images.values())


def test_malformed_and_future_catalogs_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("images: [unclosed\n")
    with pytest.raises(CatalogError, match=r"catalog\.yaml"):
        catalog.load(path)
    path.write_text("catalog_version: 99\nimages: {}\n")
    with pytest.raises(CatalogError, match="newer"):
        catalog.load(path)


def test_unknown_image_lists_the_known_ones() -> None:
    cat = add(Catalog(), "img", build("b1"))
    with pytest.raises(CatalogError) as err:
        cat.image("nope")
    assert "img" in err.value.hint


def three_images(path: Path) -> None:
    for name in ("alpha", "beta", "gamma"):
        catalog.update(path, lambda c, n=name: add(add(c, n, build(f"{n}-1")), n, build(f"{n}-2", status="failed")))


@pytest.mark.parametrize(("text", "line", "field"), [
    ("images: [1, 2]\n", 1, "images"),
    ("images:\n  img:\n    repo: r\n    recipe: x\n    recipe_digest: d\n    latest: null\n    builds: 5\n", 7,
     "images.img.builds"),
    ("images:\n  img:\n    repo: r\n    recipe: x\n    recipe_digest: d\n    latest: b1\n    builds:\n"
     "      - id: b1\n        created: '2026'\n        status: available\n        target: aws\n        commit: c\n"
     "        amis: notamap\n", 13, "images.img.builds[0].amis"),
    ("- just\n- a list\n", 1, "(top level)"),
    ("images:\n  img: 7\n", 2, "images.img"),
    ("images:\n  Bad_Name:\n    repo: r\n", 1, "images"),
])
def test_wrong_types_are_one_line_naming_file_line_and_field(tmp_path: Path, text: str, line: int,
                                                            field: str) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError) as err:
        catalog.load(path)
    assert err.value.message.startswith(f"{path}:{line}: field '{field}' ")
    assert "\n" not in str(err.value) and "git checkout" in err.value.hint


@pytest.mark.parametrize(("edit", "match"), [
    (lambda t: t.replace("status: failed", "status: exploded", 1),
     r":\d+: field 'images\.alpha\.builds\[1\]\.status' is 'exploded'"),
    (lambda t: t.replace("latest: beta-1", "latest: beta-9"), r"field 'images\.beta\.latest' names build 'beta-9'"),
    (lambda t: t.replace("id: gamma-2", "id: gamma-1"), r"field 'images\.gamma\.builds\[1\]\.id' repeats"),
    (lambda t: t.replace("      commit: abc\n", "", 1), r"field 'images\.alpha\.builds\[0\]\.commit' is missing"),
    (lambda t: t.replace("created: '2026-11-27T00:00:00Z'", "created: 2026-11-27T00:00:00Z", 1),
     r"field 'images\.alpha\.builds\[0\]\.created' must be a string"),
])
def test_semantic_and_schema_errors_name_the_line(tmp_path: Path, edit: object, match: str) -> None:
    path = tmp_path / "catalog.yaml"
    three_images(path)
    path.write_text(edit(path.read_text()))  # type: ignore[operator]
    with pytest.raises(CatalogError, match=match) as err:
        catalog.load(path)
    line = int(err.value.message.split(":")[1])
    assert 1 < line <= len(path.read_text().splitlines())


def test_a_truncated_catalog_is_refused_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    three_images(path)
    full = path.read_text()
    cut = full[: full.index("gamma-1") + 30]  # still valid YAML, cut inside gamma's first build
    cut = cut[: cut.rindex("\n") + 1]
    path.write_text(cut)
    prev_before = catalog.previous_path(path).read_bytes()
    with pytest.raises(CatalogError) as err:
        catalog.update(path, lambda c: add(c, "delta", build("delta-1")))
    assert path.read_text() == cut
    assert catalog.previous_path(path).read_bytes() == prev_before
    assert f"cp {catalog.previous_path(path)} {path}" in err.value.hint


def test_the_previous_version_is_kept_beside_on_every_write(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    catalog.update(path, lambda c: add(c, "img", build("b1")))
    assert not catalog.previous_path(path).exists()
    first = path.read_bytes()
    catalog.update(path, lambda c: add(c, "img", build("b2")))
    assert catalog.previous_path(path).read_bytes() == first
    second = path.read_bytes()
    path.write_text(second.decode().replace("latest: b2", "latest: nope"))  # a bad hand edit
    with pytest.raises(CatalogError):
        catalog.load(path)
    path.write_bytes(catalog.previous_path(path).read_bytes())  # what the hint says to do
    assert catalog.load(path).images["img"].latest == "b1"


def test_an_invalid_result_is_never_written(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    catalog.update(path, lambda c: add(c, "img", build("b1")))
    before = path.read_bytes()
    with pytest.raises(CatalogError, match="refusing to write"):
        catalog.update(path, lambda c: add(c, "img", build("b2", status="exploded")))
    assert path.read_bytes() == before


def test_a_change_on_disk_during_the_update_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    catalog.update(path, lambda c: add(c, "img", build("b1")))

    def edit_by_hand_meanwhile(c: Catalog) -> Catalog:
        path.write_text(path.read_text() + "# a hand edit\n")
        return add(c, "img", build("b2"))

    with pytest.raises(CatalogError, match="changed on disk"):
        catalog.update(path, edit_by_hand_meanwhile)
    assert path.read_text().endswith("# a hand edit\n")


def test_forget_build_moves_latest_to_the_newest_available_build() -> None:
    cat = add(add(add(Catalog(), "img", build("b1")), "img", build("b2", status="failed")), "img", build("b3"))
    cat = catalog.forget_build(cat, name="img", build_id="b3")
    assert cat.images["img"].latest == "b1" and [b.id for b in cat.images["img"].builds] == ["b1", "b2"]
    assert catalog.forget_build(cat, name="img", build_id="b1").images["img"].latest is None


def test_anchors_and_aliases_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("images:\n  a: &x {repo: r, recipe: x, recipe_digest: d, latest: null, builds: []}\n  b: *x\n")
    with pytest.raises(CatalogError, match=r"catalog\.yaml:3: an alias"):
        catalog.load(path)


def test_a_change_that_leaves_latest_dangling_is_refused_without_writing(tmp_path: Path) -> None:
    from dataclasses import replace

    path = tmp_path / "catalog.yaml"
    catalog.update(path, lambda c: add(c, "img", build("b1")))
    before = path.read_bytes()

    def drop_builds(c: Catalog) -> Catalog:
        return Catalog(images={"img": replace(c.images["img"], builds=())})

    with pytest.raises(CatalogError) as err:
        catalog.update(path, drop_builds)
    assert "field 'images.img.latest' names build 'b1'" in err.value.message and "None" not in err.value.message
    assert path.read_bytes() == before


def test_a_catalog_that_is_not_text_is_one_line_and_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_bytes(b"images:\n  \xff\xfe: x\n")
    with pytest.raises(CatalogError, match=r"is not UTF-8 text \(at byte offset 10\)"):
        catalog.load(path)
    with pytest.raises(CatalogError):
        catalog.update(path, lambda c: add(c, "img", build("b1")))
    assert path.read_bytes() == b"images:\n  \xff\xfe: x\n"

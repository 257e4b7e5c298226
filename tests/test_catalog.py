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

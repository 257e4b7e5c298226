"""What the catalog keeps of a share, per build and region: class, AMI, counts, ARNs, digests, when, by whom.

Pure: catalog in, catalog out. A record never holds a label, nor a list of account ids (the entries the
class added are kept as digests, `plan.digest`, so that unshare removes exactly them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from imagefactory.catalog import Build, Catalog, ImageEntry


def shares_of(build: Build, class_name: str) -> dict[str, dict[str, Any]]:
    """This class's records on `build`, by region."""
    return {s["region"]: s for s in build.shares if s["class"] == class_name}


def others_of(build: Build, class_name: str, region: str) -> frozenset[str]:
    """Digests other classes recorded on `build` in `region` (never removed for this class)."""
    return frozenset(d for s in build.shares if s["class"] != class_name and s["region"] == region
                     for d in s.get("entries", ()))


def _with_build(catalog: Catalog, image: str, build: Build) -> Catalog:
    entry = catalog.image(image)
    builds = tuple(build if b.id == build.id else b for b in entry.builds)
    return Catalog(images={**catalog.images, image: replace(entry, builds=builds)})


def put(catalog: Catalog, image: str, build_id: str, records: list[dict[str, Any]]) -> Catalog:
    """The catalog with `records` replacing the same class's records of the same regions on that build."""
    build = catalog.image(image).build(build_id)
    assert build is not None, build_id
    keys = {(r["class"], r["region"]) for r in records}
    kept = tuple(s for s in build.shares if (s["class"], s["region"]) not in keys)
    return _with_build(catalog, image, replace(build, shares=(*kept, *records)))


def drop(catalog: Catalog, image: str, build_id: str, class_name: str, regions: set[str]) -> Catalog:
    """The catalog without this class's records of `regions` on that build."""
    build = catalog.image(image).build(build_id)
    assert build is not None, build_id
    kept = tuple(s for s in build.shares if not (s["class"] == class_name and s["region"] in regions))
    return _with_build(catalog, image, replace(build, shares=kept))


def shared_builds(catalog: Catalog, class_name: str) -> Iterator[tuple[ImageEntry, Build]]:
    """Every (image, build) this class has a record on."""
    for entry in catalog.images.values():
        for build in entry.builds:
            if any(s["class"] == class_name for s in build.shares):
                yield entry, build

"""catalog_view: the table people read, and one image's entry as YAML text."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from imagefactory import catalog
from imagefactory.catalog import Build
from imagefactory.catalog_view import rows, show, show_yaml, table
from imagefactory.errors import CatalogError
from imagefactory.home import Home


def _build(build_id: str, target: str, status: str = "available", amis: dict[str, str] | None = None) -> Build:
    return Build(id=build_id, created="2026-11-27T21:43:25Z", status=status, target=target, account="1",
                 commit="c" * 40, ref="main", recipe_digest="sha256:x", amis=amis or {})


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = Home(tmp_path)
    record = catalog.record
    catalog.update(h.catalog_path("aws"), lambda c: record(record(
        c, name="hello-binder", repo="examples/hello-binder", recipe="recipes/hello-binder.yaml", recipe_digest="d",
        build=_build("20261127-214325-704c", "aws", amis={"us-west-2": "ami-0b", "us-east-2": "ami-0a"})),
        name="hello-binder", repo="examples/hello-binder", recipe="recipes/hello-binder.yaml", recipe_digest="d",
        build=_build("20261128-000000-dead", "aws", status="failed")))
    catalog.update(h.catalog_path("sandbox"), lambda c: record(
        c, name="a-much-longer-image-name", repo="r", recipe="recipes/a.yaml", recipe_digest="d",
        build=_build("20261129-000000-beef", "sandbox", status="failed")))
    return h


def test_table_lines_up_columns_and_counts_failed_builds(home: Home) -> None:
    lines = table(rows(home)).splitlines()
    assert lines[0].split() == ["IMAGE", "TARGET", "LATEST", "BUILD", "CREATED", "BUILDS", "AMIS"]
    assert lines[1].split() == ["hello-binder", "aws", "20261127-214325-704c", "2026-11-27T21:43:25Z",
                                "2", "(1", "failed)", "us-east-2:ami-0a", "us-west-2:ami-0b"]
    assert lines[2].split() == ["a-much-longer-image-name", "sandbox", "-", "-", "1", "(1", "failed)", "-"]
    assert lines[1].index(" aws ") + 1 == lines[2].index(" sandbox ") + 1 == lines[0].index("TARGET")
    assert lines[1].index("2026-11-27") == lines[0].index("CREATED")
    assert lines[1].index("2 (1 failed)") == lines[2].index("1 (1 failed)") == lines[0].index("BUILDS")


def test_an_empty_catalog_says_how_to_fill_it(tmp_path: Path) -> None:
    assert table(rows(Home(tmp_path))) == ("the catalog is empty: bake an image with "
                                           "'invoke bake --repo PATH-OR-URL'")


def test_show_yaml_is_the_entry_in_full_and_reads_back(home: Home) -> None:
    data = show(home, "hello-binder")
    text = show_yaml(data)
    assert text.startswith("image: hello-binder\naws:\n  repo: examples/hello-binder\n")
    assert "&" not in text and "*" not in text
    back = YAML(typ="safe", pure=True).load(text)
    assert back == data
    assert [b["id"] for b in back["aws"]["builds"]] == ["20261127-214325-704c", "20261128-000000-dead"]
    assert back["aws"]["builds"][0]["amis"] == {"us-west-2": "ami-0b", "us-east-2": "ami-0a"}


def test_show_of_an_unknown_image_lists_the_known_ones(home: Home) -> None:
    with pytest.raises(CatalogError) as err:
        show(home, "nope")
    assert "a-much-longer-image-name" in err.value.hint and "hello-binder" in err.value.hint


def test_show_gives_each_build_what_its_smoke_test_measured(tmp_path: Path, home: Home) -> None:
    assert all("smoke" not in b for b in show(home, "hello-binder")["aws"]["builds"]), "no manifest, no smoke"
    h = Home(tmp_path / "other")
    manifest = {"build_id": "20261130-000000-cafe", "packages": [{"name": "tabulate", "version": "0.8.10"}],
                "imports": {"ok": 4, "warned": 1, "failed": [
                    {"module": "spotpy", "kind": "missing", "error": "ModuleNotFoundError", "fatal": False}]},
                "notebooks": [{"path": "notebooks/check.ipynb", "ok": True, "seconds": 1.5, "cell": None,
                               "error": None}], "system": None, "data": None}
    built = replace(_build("20261130-000000-cafe", "sandbox"), image_manifest=manifest)
    catalog.update(h.catalog_path("sandbox"), lambda c: catalog.record(
        c, name="proven", repo="r", recipe="recipes/proven.yaml", recipe_digest="d", build=built))
    (build,) = show(h, "proven")["sandbox"]["builds"]
    assert build["smoke"] == {"imports": {"ok": 4, "failed": ["spotpy (warning)"]},
                              "notebooks": [{"path": "notebooks/check.ipynb", "passed": True, "seconds": 1.5}]}
    assert list(build).index("smoke") == list(build).index("image_manifest") - 1, "read before the manifest"
    text = show_yaml(show(h, "proven"))
    assert "    smoke:\n      imports:\n        ok: 4\n        failed:\n        - spotpy (warning)\n" in text

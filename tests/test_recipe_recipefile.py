"""load_recipe / write_recipe / check_recipe: round trip, diffs instead of overwrites, comments kept."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from imagefactory.errors import RecipeError
from imagefactory.recipe import PythonSpec, Recipe, Source, check_recipe, load_recipe, write_recipe

RECIPE = Recipe(name="demo", source=Source("https://example.org/demo.git", None, "a" * 40))


def test_new_file_has_header_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "recipes" / "demo.yaml"
    result = write_recipe(path, RECIPE)
    assert result.written and result.diff == ""
    text = path.read_text()
    assert text.splitlines()[0] == "# yaml-language-server: $schema=./recipe.schema.json"
    assert text.splitlines()[1].startswith("# Recipe derived by imagefactory")
    assert "edit freely" in text.splitlines()[1]
    assert load_recipe(path) == RECIPE


def test_the_schema_the_modeline_names_is_written_beside_and_checks_the_recipe(tmp_path: Path) -> None:
    path = tmp_path / "recipes" / "demo.yaml"
    write_recipe(path, RECIPE)
    schema = json.loads((path.parent / "recipe.schema.json").read_text())
    data = YAML(typ="safe", pure=True).load(path.read_text())
    jsonschema.validate(data, schema)  # what an editor does with the modeline
    data["image"]["base"] = "windows"
    with pytest.raises(jsonschema.ValidationError, match="windows"):
        jsonschema.validate(data, schema)
    data["image"]["base"] = "ubuntu-24.04"
    data["image"]["volume_gb"] = 4
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


@pytest.mark.parametrize(("text", "line", "field", "hint"), [
    ("name: demo\nsource:\n  repo: x\n  commit: y\nimage:\n  volume_gb: abc\n", 6, "image.volume_gb",
     "whole number"),
    ("name: demo\nsource:\n  repo: x\n  commit: y\nimage:\n  volume_gb: 4\n", 6, "image.volume_gb", "fix"),
    ("name: demo\nsource:\n  repo: x\n", 2, "source.commit", "re-derive"),
    ("name: demo\nsource:\n  repo: x\n  commit: y\nenvironment:\n  python:\n    version: 3.10\n", 7,
     "environment.python.version", "quoted"),
    ("name: demo\nsource:\n  repo: x\n  commit: y\nimage:\n  volum_gb: 40\n", 6, "image.volum_gb",
     "volume_gb"),
    ("name: demo\nsource:\n  repo: x\n  commit: y\ntags:\n  aws:owner: me\n", 5, "tags", "aws:"),
    ("name: demo\nsource:\n  repo: x\n  commit: y\nenvironment:\n  post_build:\n    - run: true\n", 7,
     "environment.post_build[0].path", "add it"),
    ("name: " + "a" * 70 + "\nsource:\n  repo: x\n  commit: y\n", 1, "name", "1 to 63"),
])
def test_schema_errors_name_file_line_field_and_fix(tmp_path: Path, text: str, line: int, field: str,
                                                     hint: str) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as err:
        check_recipe(path)
    assert err.value.message.startswith(f"{path}:{line}: field '{field}' ")
    if field == "name":
        assert "70 characters long, over the limit of 63" in err.value.message
    assert hint in err.value.hint
    assert len(str(err.value)) < 400


def test_python_310_stays_a_string(tmp_path: Path) -> None:
    recipe = RECIPE.with_python(PythonSpec("3.10", "stated", "runtime.txt"))
    path = tmp_path / "demo.yaml"
    write_recipe(path, recipe)
    assert load_recipe(path).environment.python.version == "3.10"


def test_rederive_over_edited_file_shows_diff_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    write_recipe(path, RECIPE)
    edited = path.read_text().replace("volume_gb: 30", "volume_gb: 60  # big data")
    path.write_text(edited)
    result = write_recipe(path, RECIPE)
    assert not result.written
    assert "-  volume_gb: 60  # big data" in result.diff and "+  volume_gb: 30" in result.diff
    assert path.read_text() == edited


def test_unchanged_rederive_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    write_recipe(path, RECIPE)
    before = path.stat().st_mtime_ns
    result = write_recipe(path, RECIPE)
    assert (result.written, result.diff) == (False, "")
    assert path.stat().st_mtime_ns == before


def test_forced_rewrite_keeps_comments_of_surviving_keys(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    write_recipe(path, RECIPE)
    text = path.read_text().replace("  base: ubuntu-22.04\n",
                                    "  # we need the old glibc\n  base: ubuntu-22.04\n")
    text = text.replace("volume_gb: 30", "volume_gb: 60  # big data")
    path.write_text(text)
    result = write_recipe(path, RECIPE.with_regions(("eu-west-1",)), force=True)
    assert result.written
    out = path.read_text()
    assert "# we need the old glibc" in out
    assert "# Recipe derived by imagefactory" in out
    assert "eu-west-1" in out and "volume_gb: 30" in out
    assert load_recipe(path) == RECIPE.with_regions(("eu-west-1",))


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: demo\nsource:\n  repo: x\n   commit: y\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert err.value.message.startswith(f"{path}:4:")


def test_check_recipe_names_file_field_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    write_recipe(path, RECIPE)
    path.write_text(path.read_text().replace("base: ubuntu-22.04", "base: windows"))
    with pytest.raises(RecipeError) as err:
        check_recipe(path)
    assert str(path) in err.value.message and "image.base" in err.value.message
    assert "ubuntu-22.04" in err.value.hint


def test_missing_file_is_a_recipe_error(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="cannot read"):
        load_recipe(tmp_path / "nope.yaml")

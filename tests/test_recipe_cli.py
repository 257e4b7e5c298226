"""The recipe commands through the real CLI: derive + why-report, edits kept, check, resolve, and the bake
stopping on packages that do not resolve before anything is spent."""

from __future__ import annotations

import json

import pytest
from conftest import DHSVM_PINS, MakeRepo, run_cli

from imagefactory import catalog
from imagefactory.home import Home


def test_derive_writes_recipe_and_explains_itself(home: Home, make_repo: MakeRepo) -> None:
    repo = make_repo({"environment/requirements.txt": "six==1.16.0\n", "environment/setup.sh": "echo hi\n",
                      "Dockerfile": "FROM scratch\n"}, name="explained")
    done = run_cli(home, "recipe", "--repo", repo.as_uri(), check=True, IMAGEFACTORY_OFFLINE="1")
    assert "environment/requirements.txt" in done.stdout and "Dockerfile" in done.stdout
    assert "Python:" in done.stdout and f"wrote {home.recipe_path('explained')}" in done.stdout
    data = json.loads(run_cli(home, "recipe", "--repo", repo.as_uri(), "--json", check=True,
                              IMAGEFACTORY_OFFLINE="1").stdout)
    assert data["written"] is False and data["recipe"]["environment"]["post_build"][0]["run"] is False


def test_rederive_keeps_user_edits_and_shows_a_diff(home: Home, make_repo: MakeRepo) -> None:
    repo = make_repo({"requirements.txt": "six\n"}, name="edited")
    run_cli(home, "recipe", "--repo", repo.as_uri(), check=True, IMAGEFACTORY_OFFLINE="1")
    path = home.recipe_path("edited")
    path.write_text(path.read_text().replace("volume_gb: 30", "volume_gb: 50  # we need room for data"))
    done = run_cli(home, "recipe", "--repo", repo.as_uri(), check=True, IMAGEFACTORY_OFFLINE="1")
    assert "kept yours" in done.stdout and "-  volume_gb: 50" in done.stdout
    assert "volume_gb: 50  # we need room for data" in path.read_text()
    run_cli(home, "recipe", "--repo", repo.as_uri(), "--force", check=True, IMAGEFACTORY_OFFLINE="1")
    assert "volume_gb: 30" in path.read_text()


def test_check_names_file_field_and_fix(home: Home, make_repo: MakeRepo) -> None:
    repo = make_repo({"requirements.txt": "six\n"}, name="checked")
    run_cli(home, "recipe", "--repo", repo.as_uri(), check=True, IMAGEFACTORY_OFFLINE="1")
    assert "valid" in run_cli(home, "recipe.check", "checked", check=True).stdout
    path = home.recipe_path("checked")
    path.write_text(path.read_text().replace("base: ubuntu-22.04", "base: windows-95"))
    done = run_cli(home, "recipe.check", "checked")
    assert done.returncode == 1
    line = done.stderr.strip()
    assert "checked.yaml" in line and "image.base" in line and "ubuntu-24.04" in line
    missing = run_cli(home, "recipe.check", "nope")
    assert missing.returncode == 1 and "checked" in missing.stderr


@pytest.mark.network
def test_check_resolve_reports_the_first_conflict_in_one_line(home: Home, make_repo: MakeRepo) -> None:
    repo = make_repo({"requirements.txt": DHSVM_PINS}, name="dhsvm-like")
    derived = run_cli(home, "recipe", "--repo", repo.as_uri(), "--json", check=True)
    assert json.loads(derived.stdout)["python"]["version"] == "3.8"
    assert json.loads(run_cli(home, "recipe.check", "dhsvm-like", "--resolve", "--json", check=True).stdout)["ok"]
    path = home.recipe_path("dhsvm-like")
    path.write_text(path.read_text().replace("version: '3.8'", "version: '3.10'"))
    done = run_cli(home, "recipe.check", "dhsvm-like", "--resolve")
    error = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and error.startswith("error:") and "matplotlib" in error


@pytest.mark.network
def test_bake_stops_before_building_when_packages_do_not_resolve(home: Home, make_repo: MakeRepo) -> None:
    repo = make_repo({"requirements.txt": "numpy==1.18.1\n", "runtime.txt": "python-3.11\n"}, name="no-wheels")
    done = run_cli(home, "bake", "--repo", repo.as_uri())
    assert done.returncode == 1 and "do not resolve" in done.stderr and "--no-resolve" in done.stderr
    assert not (home.builds_dir("sandbox") / "no-wheels").exists(), "nothing may be rendered or built"
    assert "no-wheels" not in catalog.load(home.catalog_path("sandbox")).images


def test_check_refuses_a_name_that_leaves_recipes(home: Home) -> None:
    outside = home.root.parent.parent / "x.yaml"
    outside.write_text("name: x\nsource:\n  repo: r\n  commit: c\n")  # a valid recipe, outside recipes/
    try:
        done = run_cli(home, "recipe.check", "../../x")
    finally:
        outside.unlink()
    assert done.returncode == 1
    line = done.stderr.strip()
    assert "\n" not in line and "'../../x' is not a valid image name" in line
    assert "1 to 63 lowercase letters, digits and dashes" in line


def test_a_name_over_63_characters_is_refused_saying_the_limit(home: Home, make_repo: MakeRepo) -> None:
    repo = make_repo({"requirements.txt": "six\n"}, name="long")
    done = run_cli(home, "recipe", "--repo", repo.as_uri(), "--name", "a" * 64, IMAGEFACTORY_OFFLINE="1")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: --name '{'a' * 64}' is not a valid image name: it is 64 "
                                                "characters long, over the limit of 63 (an image name is 1 to 63 "
                                                "lowercase letters, digits and dashes, starting with a letter or "
                                                "digit)"]

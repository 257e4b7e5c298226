"""A new user's own simple repository (a requirements.txt, no Python stated) bakes in the sandbox with
real provisioning on the first try, with no flag but the regions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import MakeRepo, run_cli

from imagefactory import catalog
from imagefactory.home import Home
from imagefactory.recipe import load_recipe

REGIONS = "us-west-2,us-east-2,eu-west-1"


@pytest.mark.network  # uv installs six and attrs from PyPI inside the build root
def test_a_repo_stating_no_python_bakes_in_the_sandbox_at_its_python(home: Home, make_repo: MakeRepo) -> None:
    repo = make_repo({"requirements.txt": "six==1.16.0\nattrs\n", "analysis.py": "import attr, six\n"},
                     name="my-analysis")
    done = run_cli(home, "bake", "--repo", repo.as_uri(), "--sandbox", "--regions", REGIONS, "--json", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["provisioned"] is True
    assert sorted(result["amis"]) == sorted(REGIONS.split(","))
    assert "the sandbox's own Python 3.11: nothing in the repository states a version" in done.stderr
    python = load_recipe(home.recipe_path("my-analysis")).environment.python
    assert (python.version, python.source) == ("3.11", "default")
    assert python.reason.startswith("the sandbox's own Python 3.11")
    build = catalog.load(home.catalog_path("sandbox")).images["my-analysis"].latest_build()
    assert build is not None and build.status == "available" and build.provisioned
    assert (build.python, build.python_override) == ("3.11", False)
    assert sorted(build.amis) == sorted(REGIONS.split(","))
    manifest = build.image_manifest
    assert manifest is not None and "six" in json.dumps(manifest["packages"]).lower()
    assert "[80-smoke] smoke test passed" in (Path(result["build_dir"]) / "packer.log").read_text()

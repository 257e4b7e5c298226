"""The code's imports (scanned, classified for the recipe's Python), --add-missing, and system packages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DHSVM_PINS, MakeRepo, run_cli
from conftest import simple_api_server as server_mod

from imagefactory.home import Home
from imagefactory.recipe import PackageIndex, PythonSpec, RepoTree, Source, derive, load_recipe
from imagefactory.recipe.findings import Pin
from imagefactory.recipe.imports import classify, local_modules, scan, source_imports
from imagefactory.recipe.stdlib import is_stdlib
from imagefactory.recipe.syslibs import load_table, smoke_checks

NOTEBOOK = {"cells": [
    {"cell_type": "markdown", "source": ["import not_code\n"]},
    {"cell_type": "code", "source": ["%matplotlib inline\n", "!pip install thing\n", "import pandas as pd\n",
                                     "from helpers import f\n"]},
    {"cell_type": "code", "source": "%%bash\nimport in_a_bash_cell\n"},
    {"cell_type": "code", "source": "files = !ls\nfrom PIL import Image\n"},
], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}

# shaped like ChristinaB/dhsvm-opt: pins in environment/, a script importing what no file names
DHSVM = {"environment/requirements.txt": DHSVM_PINS,
         "scripts/calibrate.py": "import os\nimport numpy as np\nimport spotpy\nfrom . import sibling\n"
                                 "from sklearn.tree import DecisionTreeClassifier\nimport imp\nimport scipy.stats\n",
         "scripts/legacy.py": "print 'python 2'\nimport pydotplus, yaml\n",
         "notebooks/run.ipynb": json.dumps(NOTEBOOK), "notebooks/helpers.py": "def f():\n    return 1\n"}


def tree_of(root: Path, files: dict[str, str]) -> RepoTree:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return RepoTree.scan(root)


@pytest.fixture
def index_url() -> Iterator[str]:
    with server_mod.serve() as srv:
        yield f"http://127.0.0.1:{srv.server_port}/simple"


def test_scan_reads_scripts_notebook_cells_and_python2_files(tmp_path: Path) -> None:
    found = scan(tree_of(tmp_path, DHSVM))
    mods = found.modules
    assert mods["spotpy"] == ("scripts/calibrate.py:3",)
    assert mods["yaml"] == ("scripts/legacy.py:2",) and mods["pydotplus"] == ("scripts/legacy.py:2",)
    assert mods["pandas"] == ("notebooks/run.ipynb#cell 2",) and mods["PIL"] == ("notebooks/run.ipynb#cell 4",)
    assert "not_code" not in mods and "in_a_bash_cell" not in mods and "thing" not in mods
    assert "sibling" not in mods and "__future__" not in source_imports("from __future__ import annotations\n")
    assert found.python_files == 3 and found.notebooks == ("notebooks/run.ipynb",)


def test_the_standard_library_is_the_recipes_pythons() -> None:
    assert is_stdlib("distutils", "3.8") and not is_stdlib("distutils", "3.12")
    assert is_stdlib("imp", "3.11") and not is_stdlib("imp", "3.12")
    assert is_stdlib("telnetlib", "3.12") and not is_stdlib("telnetlib", "3.13")
    assert not is_stdlib("tomllib", "3.10") and is_stdlib("tomllib", "3.11")
    assert is_stdlib("os", "3.8") and not is_stdlib("numpy", "3.12")


def test_import_names_are_matched_to_distributions(tmp_path: Path) -> None:
    tree = tree_of(tmp_path, DHSVM)
    kinds = {u.module: (u.kind, u.provider) for u in
             classify(scan(tree), python="3.12", dists=("scikit-learn", "numpy", "pandas"),
                      local=local_modules(tree)).uses}
    assert kinds["sklearn"] == ("provided", "scikit-learn") and kinds["numpy"] == ("provided", "numpy")
    assert kinds["helpers"] == ("local", None) and kinds["os"] == ("stdlib", None)
    assert kinds["imp"] == ("missing", None)  # stdlib at 3.8, removed in 3.12
    assert kinds["scipy"] == ("dependency", "scikit-learn")  # usually there; the smoke test measures it
    at_38 = classify(scan(tree), python="3.8", dists=(), local=frozenset())
    assert {u.module: u.kind for u in at_38.uses}["imp"] == "stdlib"


def test_dhsvm_shaped_repo_names_the_missing_import_and_graphviz(tmp_path: Path, index_url: str) -> None:
    d = derive(tree_of(tmp_path / "repo", DHSVM), name="dhsvm-opt", source=Source("r", None, "0" * 40),
               index=PackageIndex(index_url, cache_dir=tmp_path / "cache"))
    report = d.report()
    assert d.recipe.environment.python.version == "3.8"
    assert "missing spotpy: imported by scripts/calibrate.py:3 - add spotpy" in report
    assert "missing yaml: imported by scripts/legacy.py:2 - add PyYAML" in report
    assert "missing PIL: imported by notebooks/run.ipynb#cell 4 - add Pillow" in report
    assert "missing imp: imported by scripts/calibrate.py:6" not in report  # stdlib at 3.8
    assert d.recipe.environment.apt == ("graphviz",)
    assert "graphviz  for pydotplus: draws graphs with Graphviz's dot program" in report
    assert d.recipe.environment.packages == ()  # nothing added silently
    assert [(n.path, n.run) for n in d.recipe.smoke.notebooks] == [("notebooks/run.ipynb", False)]
    data = d.to_dict()
    spot = next(m for m in data["imports"]["modules"] if m["module"] == "spotpy")
    assert spot["kind"] == "missing" and spot["sites"] == ["scripts/calibrate.py:3"] and spot["provider"] == "spotpy"
    assert data["system_packages"][0]["programs"] == ["dot"]


def test_add_missing_adds_the_found_distributions_to_the_recipe(home: Home, make_repo: MakeRepo,
                                                                index_url: str) -> None:
    repo = make_repo(DHSVM, name="dhsvm-opt")
    plain = run_cli(home, "recipe", "--repo", str(repo), "--json", check=True, PIP_INDEX_URL=index_url)
    assert json.loads(plain.stdout)["recipe"]["environment"].get("packages") is None
    path = home.recipe_path("dhsvm-opt")
    path.write_text(path.read_text().replace("volume_gb: 30", "volume_gb: 40  # mine"))
    run_cli(home, "recipe", "--repo", str(repo), "--add-missing", check=True, PIP_INDEX_URL=index_url)
    recipe = load_recipe(path)
    assert recipe.environment.packages == ("Pillow", "spotpy", "PyYAML")
    assert recipe.image.volume_gb == 40 and "# mine" in path.read_text()  # your edits stay
    again = run_cli(home, "recipe", "--repo", str(repo), "--add-missing", check=True, PIP_INDEX_URL=index_url)
    assert "missing spotpy" not in again.stdout and "added Pillow, spotpy, PyYAML" in again.stdout
    assert load_recipe(path).environment.packages == recipe.environment.packages


def test_the_home_extends_the_system_package_table(home: Home, tmp_path: Path) -> None:
    (home.root / "system-packages.yaml").write_text(
        "packages:\n  mytool:\n    apt: [mytool-bin]\n    programs: [mytool]\n    reason: runs mytool\n")
    table = load_table(home.root)
    assert table["mytool"].apt == ("mytool-bin",) and "pydotplus" in table
    d = derive(tree_of(tmp_path / "repo", {"requirements.txt": "mytool\n"}), name="r",
               source=Source("r", None, "0" * 40), system_table=table)
    assert d.recipe.environment.apt == ("mytool-bin",) and "mytool-bin  for mytool: runs mytool" in d.report()
    assert smoke_checks(table, ("graphviz", "mytool-bin")) == {"programs": ["dot", "mytool"], "libraries": []}


def test_a_bad_home_system_package_file_names_file_field_and_fix(home: Home, make_repo: MakeRepo) -> None:
    (home.root / "system-packages.yaml").write_text("packages:\n  mytool:\n    apt: [Bad_Name]\n    reason: x\n")
    done = run_cli(home, "recipe", "--repo", str(make_repo({"requirements.txt": "mytool\n"})))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "system-packages.yaml" in done.stderr and "packages.mytool.apt[0]" in done.stderr
    assert "Debian package names" in done.stderr


def test_environment_packages_are_resolved_with_the_files(tmp_path: Path, index_url: str) -> None:
    from imagefactory.recipe.resolve import resolve

    tree = tree_of(tmp_path / "repo", {"analysis.py": "import numpy\n"})  # no requirement file at all
    recipe = derive(tree, name="r", source=Source("r", None, "0" * 40)).recipe
    recipe = recipe.with_python(PythonSpec("3.12", "override", "test")).with_packages(("numpy==1.18.1",))
    result = resolve(recipe, tree, index=PackageIndex(index_url), timeout=60)
    assert not result.ok and "numpy==1.18.1" in result.message


def test_source_only_entries_apply_when_no_wheel_fits_the_recipes_python(tmp_path: Path, index_url: str) -> None:
    """`when: source` entries (GDAL/HDF5/... headers) are added only when the pinned release has no wheel for
    the recipe's Python, as the (recorded) index lists its files."""
    from imagefactory.recipe.syslibs import SystemNeed
    from imagefactory.recipe.working import prove

    table = {"numpy": SystemNeed("numpy", ("libopenblas-dev",), when="source", reason="builds against BLAS"),
             "pydotplus": SystemNeed("pydotplus", ("graphviz",), programs=("dot",), reason="runs dot")}
    tree = tree_of(tmp_path / "repo", {"requirements.txt": "numpy==1.18.1\npydotplus==2.0.2\n"})
    base = derive(tree, name="r", source=Source("r", None, "0" * 40)).recipe
    index = PackageIndex(index_url, cache_dir=tmp_path / "cache")
    pins = (Pin("numpy", "1.18.1", "requirements.txt"),)
    at_38, _ = prove(tree, base.with_python(PythonSpec("3.8", "stated", "t")), pins=pins, index=index, table=table)
    at_312, _ = prove(tree, base.with_python(PythonSpec("3.12", "stated", "t")), pins=pins, index=index, table=table)
    offline, working = prove(tree, base.with_python(PythonSpec("3.12", "stated", "t")), pins=pins, table=table)
    assert at_38.environment.apt == ("graphviz",)  # numpy 1.18.1 has cp38 wheels
    assert at_312.environment.apt == ("graphviz", "libopenblas-dev")  # and none for 3.12: it builds
    assert offline.environment.apt == ("graphviz",)
    assert any("libopenblas-dev not added" in n for n in working.notes)

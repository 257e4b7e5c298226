"""Errors that name what failed: uv's whole first cause, the package whose source build failed, the
requirement whose host cannot be reached (each with a hint that fits), and `recipe.check --json` on failure.

The uv answers in tests/data/uv_stderr/ were recorded from uv itself; the resolves below run the real uv
against a local index, a local in-tree build backend and a closed loopback port (no network)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeRepo, run_cli
from conftest import simple_api_server as server_mod

from imagefactory.home import Home
from imagefactory.recipe import PackageIndex, PythonSpec, RepoTree, Source, derive
from imagefactory.recipe.resolve import resolve
from imagefactory.recipe.uvfailure import explain

RECORDED = Path(__file__).parent / "data" / "uv_stderr"
SRC = Source("https://example.org/repo.git", None, "0" * 40)
BROKEN_BACKEND = {
    "broken/pyproject.toml": "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n"
                             "[project]\nname = \"broken-two\"\nversion = \"1.0\"\ndynamic = [\"dependencies\"]\n",
    "broken/backend.py": "import sys\ndef get_requires_for_build_wheel(config_settings=None):\n    return []\n"
                         "def prepare_metadata_for_build_wheel(d, config_settings=None):\n"
                         "    print('building the extension', file=sys.stderr)\n"
                         "    print('fatal error: gdal.h: No such file or directory', file=sys.stderr)\n"
                         "    raise SystemExit(1)\n",
}


@pytest.fixture
def server() -> Iterator[Any]:
    with server_mod.serve() as srv:
        yield srv


def recorded(name: str) -> str:
    return (RECORDED / name).read_text()


def test_a_conflict_shows_uvs_whole_first_cause_with_its_lists() -> None:
    failure = explain(recorded("all-of-conflict.txt"), "3.12", ("numpy<1.25", "scipy>=1.12"))
    assert failure.message.startswith("does not resolve for Python 3.12 on linux x86_64: Because all of: "
                                      "numpy<=1.9.3, numpy>=1.10.0.post2,<=1.10.2, numpy>=1.10.4,<=1.24.4 have no "
                                      "usable wheels")
    assert failure.message.endswith("and you require numpy<1.25, we can conclude that your requirements are "
                                    "unsatisfiable.")
    assert "\n" not in failure.message and "hint" not in failure.message


def test_a_conflict_on_abi_tags_hints_at_the_pythons_that_have_wheels() -> None:
    failure = explain(recorded("abi-tags.txt"), "3.12", ("tensorflow-addons==0.23.0",))
    assert "tensorflow-addons==0.23.0 has no wheels with a matching Python ABI tag" in failure.message
    assert failure.hint.startswith("tensorflow-addons 0.23.0 has wheels only for cp39, cp310, cp311")
    assert "--python 3.11" in failure.hint


def test_the_tree_form_gives_the_whole_cause_too() -> None:
    stderr = ("  × No solution found when resolving dependencies:\n  ╰─▶ Because foo==1 depends on bar>2\n"
              "      and you require bar<2, we can conclude that your requirements are unsatisfiable.\n")
    assert explain(stderr, "3.11", ()).message == (
        "does not resolve for Python 3.11 on linux x86_64: Because foo==1 depends on bar>2 and you require bar<2, "
        "we can conclude that your requirements are unsatisfiable.")
    assert "s3cret" not in explain("error: failed to fetch https://u:s3cret@host/simple/x/", "3.11", ()).message


def test_a_failed_source_build_names_the_package_and_its_error() -> None:
    failure = explain(recorded("sdist-build.txt"), "3.12", ("sklearn",))
    assert failure.message.startswith("the source build of `sklearn==0.0.post12` failed for Python 3.12: ")
    assert "build backend returned an error" not in failure.message
    assert failure.hint.startswith("pin a release of sklearn that has a linux x86_64 wheel for Python 3.12")


def test_an_unreachable_vcs_requirement_is_named_with_its_host() -> None:
    req = "git+https://unreachable.invalid/x/y.git#egg=y"
    failure = explain(recorded("vcs-dns.txt"), "3.12", ("numpy", req))
    assert failure.message == (f"requirement `{req}` cannot be fetched: host unreachable.invalid is unreachable "
                               "(unable to access 'https://unreachable.invalid/x/y.git/': Could not resolve host: "
                               "unreachable.invalid)")
    assert "unreachable.invalid can be reached" in failure.hint and "pins" not in failure.hint


def _recipe(root: Path, files: dict[str, str]) -> tuple[Any, RepoTree]:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    tree = RepoTree.scan(root)
    recipe = derive(tree, name="r", source=SRC).recipe
    return recipe.with_python(PythonSpec("3.11", "override", "test")), tree


def test_real_uv_names_the_local_package_whose_build_failed(tmp_path: Path, server: Any) -> None:
    index = PackageIndex(f"http://127.0.0.1:{server.server_port}/simple")
    recipe, tree = _recipe(tmp_path, {"requirements.txt": "./broken\n", **BROKEN_BACKEND})
    result = resolve(recipe, tree, index=index, timeout=60)
    assert not result.ok
    assert result.message.startswith("the source build of `broken-two @ file://")
    assert result.message.endswith("failed for Python 3.11: fatal error: gdal.h: No such file or directory")
    assert "apt.txt" in result.hint


def test_real_uv_names_an_unreachable_url_requirement(tmp_path: Path, server: Any) -> None:
    index = PackageIndex(f"http://127.0.0.1:{server.server_port}/simple")
    req = "y @ http://127.0.0.1:9/x/y-1.0.tar.gz"
    recipe, tree = _recipe(tmp_path, {"requirements.txt": f"{req}\n"})
    result = resolve(recipe, tree, index=index, timeout=60)
    assert not result.ok
    assert result.message.startswith(f"requirement `{req}` cannot be fetched: host 127.0.0.1 is unreachable (")
    assert "127.0.0.1 can be reached" in result.hint


def test_check_json_prints_json_on_failure_too(home: Home, make_repo: MakeRepo, server: Any) -> None:
    req = "git+http://127.0.0.1:9/x/y.git#egg=y"
    repo = make_repo({"requirements.txt": f"{req}\n"}, name="unfetchable")
    index = {"PIP_INDEX_URL": f"http://127.0.0.1:{server.server_port}/simple"}
    run_cli(home, "recipe", "--repo", repo.as_uri(), check=True, IMAGEFACTORY_OFFLINE="1")
    done = run_cli(home, "recipe.check", "unfetchable", "--resolve", "--json", **index)
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert data["ok"] is False and f"requirement `{req}` cannot be fetched" in data["message"]
    assert "127.0.0.1 can be reached" in data["hint"]
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    home.recipe_path("unfetchable").write_text("name: unfetchable\n")
    invalid = run_cli(home, "recipe.check", "unfetchable", "--json")
    assert invalid.returncode == 1 and json.loads(invalid.stdout)["ok"] is False
    assert "source" in json.loads(invalid.stdout)["error"]

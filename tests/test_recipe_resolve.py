"""resolve(): the recipe's pip part through `uv pip compile` for the chosen Python on linux x86_64."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DHSVM_PINS, new_home
from conftest import simple_api_server as server_mod

from imagefactory.home import Home
from imagefactory.preflight import preflight
from imagefactory.proc import MissingProgram
from imagefactory.recipe import PackageIndex, PythonSpec, RepoTree, Source, derive
from imagefactory.recipe.resolve import resolve
from imagefactory.recipe_commands import rehearsal

SRC = Source("https://example.org/repo.git", None, "0" * 40)


@pytest.fixture
def server() -> Iterator[Any]:
    with server_mod.serve() as srv:
        yield srv


def setup(root: Path, files: dict[str, str], python: str, index: PackageIndex | None = None) -> Any:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    tree = RepoTree.scan(root)
    recipe = derive(tree, name="r", source=SRC, index=index).recipe
    return recipe.with_python(PythonSpec(python, "override", "test")), tree


def test_impossible_pins_give_one_line_conflict(tmp_path: Path, server: Any) -> None:
    index = PackageIndex(f"http://127.0.0.1:{server.server_port}/simple")
    recipe, tree = setup(tmp_path, {"environment/requirements.txt": "numpy==1.18.1\npandas==1.0.1\n"}, "3.12")
    started = time.monotonic()
    result = resolve(recipe, tree, index=index, timeout=60)
    assert time.monotonic() - started < 30
    assert not result.ok and result.pins == ()
    assert "\n" not in result.message
    assert result.message.startswith("does not resolve for Python 3.12 on linux x86_64: Because ")
    assert "numpy==1.18.1" in result.message or "pandas==1.0.1" in result.message
    assert server.hits.count("/simple/numpy/") >= 2  # asked by the classifier and by uv: the local index


def test_nothing_to_resolve(tmp_path: Path) -> None:
    recipe, tree = setup(tmp_path, {"environment.yml": "dependencies: [numpy]\n"}, "3.10")
    result = resolve(recipe, tree)
    assert result.ok and result.pins == ()
    assert result.message == "no pip requirements to resolve (conda packages not checked here)"


def test_timeout_is_bounded(tmp_path: Path, server: Any) -> None:
    index = PackageIndex(f"http://127.0.0.1:{server.server_port}/simple")
    recipe, tree = setup(tmp_path, {"requirements.txt": "numpy==1.18.1\n"}, "3.8")
    result = resolve(recipe, tree, index=index, timeout=0.001)
    assert not result.ok and "did not finish within" in result.message


@pytest.mark.network
def test_dhsvm_opt_resolves_on_38_from_pypi(tmp_path: Path) -> None:
    index = PackageIndex(cache_dir=tmp_path / "cache")
    recipe, tree = setup(tmp_path, {"environment/requirements.txt": DHSVM_PINS}, "3.8", index)
    result = resolve(recipe, tree, index=index)
    assert result.ok, result.message
    assert {"numpy==1.18.1", "pandas==1.0.1", "pydotplus==2.0.2", "sqlalchemy==1.3.13"} <= set(result.pins)


@pytest.mark.network
def test_dhsvm_opt_does_not_resolve_on_310(tmp_path: Path) -> None:
    index = PackageIndex(cache_dir=tmp_path / "cache")
    recipe, tree = setup(tmp_path, {"environment/requirements.txt": DHSVM_PINS}, "3.10", index)
    result = resolve(recipe, tree, index=index)
    assert not result.ok and "has no usable wheels" in result.message


def _stated_38(root: Path, files: dict[str, str]) -> tuple[Any, Home]:
    recipe, _ = setup(root / "repo", {"runtime.txt": "python-3.8\n", **files}, "3.8")
    return recipe.with_python(PythonSpec("3.8", "stated", "python 3.8 in runtime.txt")), new_home(root / "home")


def test_the_sandbox_preflight_offers_python_311_only_when_the_pins_resolve_there(
        tmp_path: Path, server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.server_port}/simple")
    recipe, home = _stated_38(tmp_path / "a", {"requirements.txt": "numpy==1.18.1\npandas==1.0.1\n"})
    (problem,) = preflight(recipe, target="sandbox", probe=lambda _: True,
                           rehearse=rehearsal(home, recipe, tmp_path / "a" / "repo"))
    assert problem.startswith("the recipe wants Python 3.8 (stated: python 3.8 in runtime.txt) but the sandbox")
    assert "do not resolve at 3.11 (does not resolve for Python 3.11 on linux x86_64: Because " in problem
    assert problem.endswith("rehearse with --api-only, build on AWS") and "--python" not in problem
    recipe, home = _stated_38(tmp_path / "b", {"environment.yml": "dependencies: [numpy]\n"})
    (problem,) = preflight(recipe, target="sandbox", probe=lambda _: True,
                           rehearse=rehearsal(home, recipe, tmp_path / "b" / "repo"))
    assert problem.endswith("its pins resolve at 3.11 too: rehearse with --python 3.11")


def test_a_missing_uv_is_named_and_never_blamed_on_the_pins(tmp_path: Path, server: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import uv

    index = PackageIndex(f"http://127.0.0.1:{server.server_port}/simple")
    recipe, tree = setup(tmp_path, {"requirements.txt": "numpy==1.18.1\n"}, "3.8")
    monkeypatch.setattr(uv, "find_uv_bin", lambda: str(tmp_path / "no-uv-here"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    with pytest.raises(MissingProgram) as err:
        resolve(recipe, tree, index=index)
    assert str(err.value) == "uv is not installed (not found on PATH) (pip install uv (a dependency of imagefactory: " \
                             "reinstall it))"

"""The Python version: stated, inferred from exact pins via a (local, recorded) index, default, override."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DHSVM_PINS
from conftest import simple_api_server as server_mod

from imagefactory.errors import RecipeError
from imagefactory.recipe import PackageIndex, PostBuild, PythonSpec, RepoTree, Source, derive
from imagefactory.recipe.findings import Pin
from imagefactory.recipe.infer import infer
from imagefactory.recipe.python import FACTORY_DEFAULT, PythonDefault, redefault
from imagefactory.recipe.pythons import Pythons

# what the factory can build, fixed here (uv's own list moves with uv's version): 3.8–3.15
PYTHONS = Pythons(tuple((f"3.{m}", f"3.{m}.9") for m in range(8, 16)), "a fixed list for the tests")
SRC = Source("https://github.com/ChristinaB/dhsvm-opt", None, "0" * 40)
DHSVM = {"environment/requirements.txt": DHSVM_PINS, "environment/setup.sh": "#!/bin/bash\nconda env list\n",
         "README.md": "DHSVM optimisation notebooks\n", "notebooks/run.ipynb": "{}"}


@pytest.fixture
def server() -> Iterator[Any]:
    with server_mod.serve() as srv:
        yield srv


def url(srv: Any, prefix: str = "") -> str:
    return f"http://127.0.0.1:{srv.server_port}{prefix}/simple"


def make_repo(root: Path, files: dict[str, str]) -> RepoTree:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return RepoTree.scan(root)


def py(tmp_path: Path, files: dict[str, str], index: PackageIndex | None = None, **kw: Any) -> Any:
    kw.setdefault("pythons", PYTHONS)
    d = derive(make_repo(tmp_path / "repo", files), name="r", source=SRC, index=index, **kw)
    return d, d.recipe.environment.python


def test_dhsvm_opt_layout_infers_38_with_setup_script_off(tmp_path: Path, server: Any) -> None:
    d, python = py(tmp_path, DHSVM, PackageIndex(url(server), cache_dir=tmp_path / "cache"))
    assert (python.version, python.source) == ("3.8", "inferred")
    assert "numpy==1.18.1" in python.reason and "linux x86_64 wheels" in python.reason
    assert "pydotplus" not in python.reason  # sdist-only: constrains only through requires-python
    env = d.recipe.environment
    assert env.pip == ("environment/requirements.txt",)
    assert env.post_build == (PostBuild("environment/setup.sh", run=False),)
    assert any("run: true" in n and "environment/setup.sh" in n for n in d.notes)
    assert "Python: 3.8 (inferred)" in d.report()


def test_cache_answers_without_the_server(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with server_mod.serve() as srv:
        index = PackageIndex(url(srv), cache_dir=cache)
        py(tmp_path / "a", DHSVM, index)
        assert len(srv.hits) == 8
    started = time.monotonic()
    _, python = py(tmp_path / "b", DHSVM, index)  # server gone: only the cache can answer
    assert python.version == "3.8" and python.source == "inferred"
    assert time.monotonic() - started < 1.0


def test_unreachable_index_falls_back_to_default_with_warning(tmp_path: Path, server: Any) -> None:
    port = server.server_port
    server.shutdown()
    server.server_close()
    started = time.monotonic()
    d, python = py(tmp_path, DHSVM, PackageIndex(f"http://user:s3cret@127.0.0.1:{port}/simple"))
    assert time.monotonic() - started < 10
    assert (python.version, python.source) == ("3.12", "default")
    warnings = [n for n in d.notes if n.startswith("warning:")]
    assert len(warnings) == 1 and "unreachable" in warnings[0]
    assert "s3cret" not in d.report() and "s3cret" not in str(d.to_dict())


def test_slow_index_is_bounded(tmp_path: Path) -> None:
    with server_mod.serve(slow_s=3.0) as srv:
        started = time.monotonic()
        d, python = py(tmp_path, DHSVM, PackageIndex(url(srv, "/slow"), timeout=(0.5, 0.5)))
        assert time.monotonic() - started < 3.0
    assert python.source == "default"
    assert any(n.startswith("warning:") for n in d.notes)


def test_html_only_index_is_read(tmp_path: Path, server: Any) -> None:
    _, python = py(tmp_path, DHSVM, PackageIndex(url(server, "/html")))
    assert (python.version, python.source) == ("3.8", "inferred")


def test_index_url_in_requirements_is_honoured(tmp_path: Path, server: Any) -> None:
    files = {"requirements.txt": f"--index-url {url(server)}\n{DHSVM_PINS}"}
    d, python = py(tmp_path, files, PackageIndex("http://127.0.0.1:9/simple"))
    assert python.version == "3.8"
    assert any(url(server) in n for n in d.notes)


def test_index_from_environment_variables(server: Any) -> None:
    assert PackageIndex.from_environment({"PIP_INDEX_URL": url(server)}).url == url(server)
    assert PackageIndex.from_environment({"UV_INDEX_URL": "http://a/simple", "PIP_INDEX_URL": "http://b"}).url \
        == "http://a/simple"
    assert PackageIndex.from_environment({}).url == "https://pypi.org/simple"


def test_index_none_never_asks(tmp_path: Path, server: Any) -> None:
    _, python = py(tmp_path, DHSVM, None)
    assert python.source == "default" and "not asked" in python.reason
    assert server.hits == []


def test_abi3_wheels_serve_newer_pythons(tmp_path: Path, server: Any) -> None:
    (verdict,) = infer((Pin("cryptography", "41.0.7", "requirements.txt:1"),), PackageIndex(url(server))).verdicts
    assert verdict.compiled and {"3.8", "3.13", "3.14", "3.15"} <= set(verdict.minors)  # cp37-abi3
    _, python = py(tmp_path, {"requirements.txt": "cryptography==41.0.7\nrequests==2.31.0\n"},
                   PackageIndex(url(server)))
    assert python.source == "default"  # wheels for every Python that can be built: the pins do not decide


def test_pure_pins_that_admit_the_default_leave_it(tmp_path: Path, server: Any) -> None:
    _, python = py(tmp_path, {"requirements.txt": "requests==2.31.0\npydotplus==2.0.2\n"},
                   PackageIndex(url(server)))
    assert (python.version, python.source) == ("3.12", "default")


def test_pin_missing_from_index_is_noted(tmp_path: Path, server: Any) -> None:
    d, python = py(tmp_path, {"requirements.txt": "numpy==1.18.1\nnot-recorded==1.0\n"}, PackageIndex(url(server)))
    assert python.version == "3.8"
    assert any("not-recorded==1.0" in n and "not on the package index" in n for n in d.notes)


@pytest.mark.parametrize(("files", "version"), [
    ({"runtime.txt": "python-3.9\n"}, "3.9"),
    ({"runtime.txt": "python-3.10.4\n"}, "3.10"),
    ({"environment.yml": "dependencies:\n  - python=3.9\n"}, "3.9"),
    ({"environment.yml": "dependencies:\n  - python>=3.9,<3.11\n"}, "3.10"),
    ({"environment.yml": "dependencies:\n  - python 3.8\n"}, "3.8"),
    ({"environment.yml": "dependencies:\n  - conda-forge::python>=3.7\n"}, "3.15"),
    ({"Pipfile": "[packages]\nnumpy = '*'\n[requires]\npython_version = '3.9'\n"}, "3.9"),
    ({"pyproject.toml": "[project]\nname = 'x'\nrequires-python = '>=3.9,<3.11'\n"}, "3.10"),
    ({"setup.cfg": "[options]\npython_requires = >=3.6, <3.9\n", "setup.py": "from setuptools import setup\n"},
     "3.8"),
    ({"setup.py": "setup(name='x', python_requires='~=3.9.0')\n"}, "3.9"),
])
def test_stated_versions(tmp_path: Path, files: dict[str, str], version: str) -> None:
    _, python = py(tmp_path, files)
    assert (python.version, python.source) == (version, "stated")


def test_runtime_txt_beats_environment_yml(tmp_path: Path) -> None:
    d, python = py(tmp_path, {"runtime.txt": "python-3.8\n", "environment.yml": "dependencies: [python=3.9]\n"})
    assert python.version == "3.8" and "runtime.txt" in python.reason
    assert any("disagree" in n for n in d.notes)


def test_stated_range_narrowed_by_pins(tmp_path: Path, server: Any) -> None:
    files = {"pyproject.toml": "[project]\nname='x'\nrequires-python='>=3.7'\n", "requirements.txt": DHSVM_PINS}
    _, python = py(tmp_path, files, PackageIndex(url(server)))
    assert (python.version, python.source) == ("3.8", "inferred")
    assert "requires-python" in python.reason and "3.8–3.15" in python.reason


def test_setup_py_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    setup = f"open({str(marker)!r}, 'w').write('x')\nsetup(python_requires='>=3.9,<3.10')\n"
    _, python = py(tmp_path, {"setup.py": setup})
    assert python.version == "3.9" and not marker.exists()


def test_python_2_is_refused_unless_overridden(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"environment.yml line 2.*outside"):
        py(tmp_path, {"environment.yml": "dependencies:\n  - python=2.7\n"})
    _, python = py(tmp_path / "o", {"environment.yml": "dependencies:\n  - python=2.7\n"}, python_override="3.8")
    assert (python.version, python.source) == ("3.8", "override")


@pytest.mark.network
def test_live_pypi_dhsvm_opt_gives_38(tmp_path: Path) -> None:
    _, python = py(tmp_path, DHSVM, PackageIndex(cache_dir=tmp_path / "cache"))
    assert (python.version, python.source) == ("3.8", "inferred")


SANDBOX_DEFAULT = PythonDefault("3.11", "the sandbox's own Python")


def test_with_nothing_stated_the_targets_default_is_taken_and_named(tmp_path: Path) -> None:
    d, python = py(tmp_path, {"requirements.txt": "six==1.16.0\nattrs\n"}, None, python_default=SANDBOX_DEFAULT)
    assert (python.version, python.source) == ("3.11", "default")
    assert python.reason.startswith("the sandbox's own Python 3.11: nothing in the repository states a version")
    assert "Python: 3.11 (default) - the sandbox's own Python 3.11: nothing in the repository" in d.report()
    _, aws = py(tmp_path / "b", {"requirements.txt": "six==1.16.0\n"}, None)
    assert aws.version == "3.12" and aws.reason.startswith("the factory default Python 3.12: ")


def test_a_stated_version_is_not_replaced_by_the_targets_default(tmp_path: Path) -> None:
    _, python = py(tmp_path, {"runtime.txt": "python-3.8\n"}, None, python_default=SANDBOX_DEFAULT)
    assert (python.version, python.source) == ("3.8", "stated")


def test_a_derived_default_follows_the_target_but_a_hand_edit_stays(tmp_path: Path) -> None:
    _, sandbox = py(tmp_path, {"requirements.txt": "six\n"}, None, python_default=SANDBOX_DEFAULT)
    moved = redefault(sandbox, FACTORY_DEFAULT)
    assert moved is not None and (moved.version, moved.source) == ("3.12", "default")
    assert moved.reason.startswith("the factory default Python 3.12: nothing in the repository")
    assert redefault(moved, SANDBOX_DEFAULT) == sandbox
    assert redefault(sandbox, SANDBOX_DEFAULT) is None
    edited = PythonSpec("3.10", "default", sandbox.reason)  # the user changed the version, not the source
    assert redefault(edited, FACTORY_DEFAULT) is None
    assert redefault(PythonSpec("3.11", "stated", "runtime.txt"), FACTORY_DEFAULT) is None
    old = PythonSpec()  # a recipe written before defaults named their target
    assert redefault(old, SANDBOX_DEFAULT) == PythonSpec("3.11", "default", SANDBOX_DEFAULT.spec(
        "nothing in the repository states a version").reason)

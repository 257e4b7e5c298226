"""Choosing the Python at which the environment installs: what can be built is data (uv's list, cut by the
index), --python applies before any range check (recipe and bake), a version outside the range is one line
whose fix can be followed, and with nothing stated the resolver searches downward (each try and its
failure reported); statements that disagree are decided by where the environment resolves."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import MakeRepo, new_home, run_cli

from imagefactory.checkouts import checkout
from imagefactory.cloud.target import python_default
from imagefactory.errors import RecipeError
from imagefactory.home import Home
from imagefactory.recipe import PackageIndex, RepoTree, Source, derive
from imagefactory.recipe.findings import PythonClaim
from imagefactory.recipe.index import IndexFile
from imagefactory.recipe.pysearch import resolving_attempt, search
from imagefactory.recipe.python import FACTORY_DEFAULT, choose
from imagefactory.recipe.pythons import Pythons, buildable, cut_by_wheels, from_uv_list
from imagefactory.recipe.resolve import find_uv
from imagefactory.recipe_commands import bake_recipe

PYTHONS = Pythons(tuple((f"3.{m}", f"3.{m}.9") for m in range(8, 16)), "a fixed list for the tests")
SRC = Source("https://example.org/r.git", None, "0" * 40)


def quiet(_: str) -> None:
    pass


class Resolver:
    """An attempt that resolves at the given minors only, recording what it was asked."""

    def __init__(self, *resolves: str) -> None:
        self.resolves, self.asked = resolves, []

    def __call__(self, minor: str, left: float) -> tuple[bool, str]:
        self.asked.append(minor)
        return minor in self.resolves, f"Because numpy<1.25 has no wheels for cp{minor.replace('.', '')}"


def test_the_range_is_what_uv_can_install_final_releases_only() -> None:
    pythons, _ = buildable(find_uv(), index=None, cache_dir=None)  # the real uv, offline
    assert {"3.8", "3.12", "3.13", "3.14"} <= set(pythons.minors) and "2.7" not in pythons.minors
    assert all(int(p.split(".")[2]) >= 0 for p in dict(pythons.patches).values())
    listed = [{"implementation": "cpython", "os": "linux", "arch": "x86_64", "libc": "gnu", "variant": "default",
               "version": v} for v in ("3.16.0a2", "3.15.1", "3.15.2", "3.9.25")]
    listed.append({**listed[1], "version": "3.10.1", "libc": "musl"})
    assert from_uv_list(listed).patches == (("3.9", "3.9.25"), ("3.15", "3.15.2"))


def test_the_index_cuts_minors_without_kernel_wheels_and_the_answer_is_cached(tmp_path: Path) -> None:
    files = (IndexFile("pyzmq-27.0.0-cp312-cp312-manylinux_2_28_x86_64.whl"),
             IndexFile("pyzmq-27.0.0-cp313-cp313-manylinux_2_28_x86_64.whl"), IndexFile("pyzmq-27.0.0.tar.gz"),
             IndexFile("pyzmq-26.0.0-cp314-cp314-manylinux_2_28_x86_64.whl"))
    cut, note = cut_by_wheels(PYTHONS, files)
    assert cut.minors[-1] == "3.13" and note is not None and "3.14, 3.15 left out" in note and "pyzmq" in note
    assert cut_by_wheels(PYTHONS, None) == (PYTHONS, None)
    first, _ = buildable(find_uv(), index=None, cache_dir=tmp_path)
    assert json.loads((tmp_path / "pythons.json").read_text())["patches"]
    assert buildable("/no/such/uv", index=None, cache_dir=tmp_path)[0] == first  # from the cache, uv not run


def test_a_version_outside_the_range_is_one_line_naming_the_override_to_pass() -> None:
    claim = PythonClaim("==2.7.*", "runtime.txt line 1", 0)
    with pytest.raises(RecipeError) as caught:
        choose((claim,), (), override=None, index=None, pythons=PYTHONS)
    assert str(caught.value) == ("runtime.txt line 1: python 2.7 is outside what the factory can build (3.8–3.15: "
                                 "a fixed list for the tests) (pass --python 3.8 (invoke recipe --repo ... --python "
                                 "3.8, or invoke bake ... --python 3.8), or state a Python 3.8–3.15 in runtime.txt)")
    spec, _ = choose((claim,), (), override="3.10", index=None, pythons=PYTHONS)
    assert (spec.version, spec.source) == ("3.10", "override")
    with pytest.raises(RecipeError, match=r"--python 3.5 is outside .*\(pass --python 3.8\)"):
        choose((), (), override="3.5", index=None, pythons=PYTHONS)
    spec, notes = choose((claim, PythonClaim(">=3.9", "setup.py python_requires", 4)), (), override=None,
                         index=None, pythons=PYTHONS)
    assert spec.version == "3.15" and any("python 2.7 in runtime.txt line 1 is outside" in n for n in notes)


def test_with_nothing_stated_the_search_goes_down_until_the_pip_part_resolves() -> None:
    resolver = Resolver("3.11", "3.10")
    spec, notes = choose((), (), override=None, index=None, pythons=PYTHONS, attempt=resolver)
    assert resolver.asked == ["3.15", "3.14", "3.13", "3.12", "3.11"]
    assert (spec.version, spec.source) == ("3.11", "inferred")
    assert spec.reason == ("nothing in the repository states a version; 3.11 is the newest Python at which the pip "
                           "part resolves with wheels for compiled packages (tried 3.15, 3.14, 3.13, 3.12, 3.11: "
                           "3.15, 3.14, 3.13, 3.12 do not resolve, see the notes)")
    assert "Python 3.12: the pip part does not resolve: Because numpy<1.25 has no wheels for cp312" in notes
    nothing = Resolver()
    spec, notes = choose((), (), override=None, index=None, pythons=PYTHONS, attempt=nothing)
    assert (spec.version, spec.source) == ("3.12", "default") and len(nothing.asked) == 8
    assert "the pip part resolves at none of the Pythons tried (3.15, 3.14, 3.13, 3.12, 3.11, 3.10, 3.9, 3.8)" in notes


def test_the_search_is_bounded_in_time() -> None:
    ticks = iter(range(0, 1000, 50))
    found = search(("3.15", "3.14", "3.13"), Resolver(), budget_s=120, clock=lambda: next(ticks))
    assert [t.minor for t in found.tried] == ["3.15", "3.14"] and found.found is None
    assert found.stopped == "the 120 s budget was spent before 3.13 was tried"


def test_a_sandbox_target_does_not_search_it_builds_one_python() -> None:
    resolver = Resolver("3.11")
    spec, _ = choose((), (), override=None, index=None, pythons=PYTHONS, attempt=resolver,
                     default=python_default("sandbox"))
    assert (spec.version, spec.source, resolver.asked) == ("3.11", "default", [])


def test_disagreeing_statements_take_the_one_at_which_the_environment_resolves() -> None:
    claims = (PythonClaim("==3.9.*", "runtime.txt line 1", 0), PythonClaim("==3.12.*", "environment.yml line 3", 1))
    spec, notes = choose(claims, (), override=None, index=None, pythons=PYTHONS, attempt=Resolver("3.12"))
    assert (spec.version, spec.source) == ("3.12", "stated")
    assert spec.reason == ("python 3.12 in environment.yml line 3, chosen over python 3.9 in runtime.txt line 1: "
                           "the environment resolves there")
    (note,) = [n for n in notes if "disagree" in n]
    assert note.startswith("the Python constraints disagree (python 3.9 in runtime.txt line 1; python 3.12 in "
                           "environment.yml line 3); the environment resolves at 3.12 (environment.yml line 3), "
                           "not at 3.9 (runtime.txt line 1: Because numpy<1.25 has no wheels for cp39)")
    spec, notes = choose(claims, (), override=None, index=None, pythons=PYTHONS)  # no resolver: rank order
    assert spec.version == "3.9" and any("not resolved to decide" in n for n in notes)


def test_invoke_recipe_takes_python_before_the_range_check(home: Home, make_repo: MakeRepo) -> None:
    repo = make_repo({"runtime.txt": "python-2.7\n", "requirements.txt": "six\n"}, name="old-py")
    refused = run_cli(home, "recipe", "--repo", repo.as_uri(), IMAGEFACTORY_OFFLINE="1")
    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: runtime.txt line 1: python 2.7 is outside what the factory can build (3.8–")
    assert "pass --python 3.8 (invoke recipe --repo ... --python 3.8" in line
    done = run_cli(home, "recipe", "--repo", repo.as_uri(), "--python", "3.8", "--json", check=True,
                   IMAGEFACTORY_OFFLINE="1")
    assert json.loads(done.stdout)["python"] == {"version": "3.8", "source": "override",
                                                 "reason": "given on the command line"}


def test_bake_python_applies_before_the_range_check(make_repo: MakeRepo, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEFACTORY_OFFLINE", "1")
    repo = make_repo({"environment.yml": "dependencies:\n  - python=3.5\n  - numpy\n"}, name="py35")
    home = new_home(tmp_path / "home")
    found = checkout(home, repo.as_uri(), ref=None, name=None, progress=quiet)
    with pytest.raises(RecipeError, match=r"python 3\.5 is outside"):
        bake_recipe(home, found, regions=None, python=None, default=FACTORY_DEFAULT, progress=quiet)
    recipe, path, _ = bake_recipe(home, found, regions=None, python="3.11", default=FACTORY_DEFAULT, progress=quiet)
    assert (recipe.environment.python.version, recipe.environment.python.source) == ("3.11", "override")
    assert path.exists()
    with pytest.raises(RecipeError, match=r"^--python 3\.5 is outside what the factory can build \(3\.6–"):
        bake_recipe(home, found, regions=None, python="3.5", default=FACTORY_DEFAULT, progress=quiet)


@pytest.mark.network
def test_real_pypi_search_and_disagreement(tmp_path: Path) -> None:
    index = PackageIndex(cache_dir=tmp_path / "index")
    pythons, _ = buildable(find_uv(), index=index, cache_dir=None)

    def run(root: Path, files: dict[str, str]) -> tuple[object, float]:
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        tree = RepoTree.scan(root)
        started = time.monotonic()
        d = derive(tree, name="r", source=SRC, index=index, pythons=pythons,
                   attempt_for=lambda env: resolving_attempt(env, tree, index, tmp_path / "search"))
        return d, time.monotonic() - started

    d, first = run(tmp_path / "a", {"requirements.txt": "numpy<1.25\n"})
    python = d.recipe.environment.python  # type: ignore[attr-defined]
    assert (python.version, python.source) == ("3.11", "inferred"), d.notes  # type: ignore[attr-defined]
    assert "Python 3.12: the pip part does not resolve: Because" in "\n".join(d.notes)  # type: ignore[attr-defined]
    d, again = run(tmp_path / "b", {"requirements.txt": "numpy<1.25\n"})
    assert again < 1.0 < first or again < first / 3  # the cache answers
    d, _ = run(tmp_path / "c", {"runtime.txt": "python-3.9\n", "environment.yml":
                                "dependencies:\n  - python=3.12\n  - pip:\n    - numpy==2.3.0\n"})
    python = d.recipe.environment.python  # type: ignore[attr-defined]
    assert (python.version, python.source) == ("3.12", "stated")  # type: ignore[attr-defined]
    assert "chosen over python 3.9 in runtime.txt line 1" in python.reason  # type: ignore[attr-defined]


def test_a_conda_environment_may_state_an_older_python_conda_forge_builds(tmp_path: Path) -> None:
    (tmp_path / "environment.yml").write_text("dependencies:\n  - python=3.7\n  - numpy\n")
    d = derive(RepoTree.scan(tmp_path), name="r", source=SRC, pythons=PYTHONS)
    assert (d.recipe.environment.python.version, d.recipe.environment.python.source) == ("3.7", "stated")
    (tmp_path / "environment.yml").unlink()
    (tmp_path / "runtime.txt").write_text("python-3.7\n")
    with pytest.raises(RecipeError, match=r"python 3\.7 is outside what the factory can build \(3\.8–3\.15"):
        derive(RepoTree.scan(tmp_path), name="r", source=SRC, pythons=PYTHONS)

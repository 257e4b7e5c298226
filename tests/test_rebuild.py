"""`stale` and `rebuild` end to end in the sandbox: real git repos, API-only bakes with the real Packer
against the real emulator, the real CLI. Never a mock."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_env, commit_repo, git, interrupt_at, new_home, run_cli, stop_emulator

from imagefactory import catalog
from imagefactory.classes import roster as rosters
from imagefactory.errors import SandboxError
from imagefactory.home import Home
from imagefactory.rebuild import plan
from imagefactory.sandbox.emulator import publish_base
from imagefactory.sandbox.org import CLASS_KEY_ALIAS, STUDENTS
from imagefactory.staleness import Reason, Unknown, Verdict


def test_the_plan_says_full_or_incremental_and_why() -> None:
    build = catalog.Build(id="b1", created="2026-11-30T06:00:00Z", status="available", target="sandbox", account="1",
                          commit="c1", ref="main", recipe_digest="sha256:r", amis={"us-west-2": "ami-1"},
                          provisioned=False, python="3.8", python_override=True,
                          shares=({"class": "hydro-101", "region": "us-west-2"},))
    entries = {n: catalog.ImageEntry(n, f"repos/{n}", f"recipes/{n}.yaml", "sha256:r", "b1", (build,))
               for n in ("moved", "fresh", "unsure")}
    moved = Reason("commit", "c1", "c2", "commit moved: main at c1 -> c2")
    verdicts = (Verdict("moved", "b1", (moved,)), Verdict("fresh", "b1"),
                Verdict("unsure", "b1", (), (Unknown("commit", "no answer within 30 s"),)))
    stale_only = plan(verdicts, entries, home_root=Path("/h"), target="sandbox", named=False, full=False)
    assert [(p.name, p.mode, p.options.parent) for p in stale_only] == [("moved", "incremental", "b1")]
    opts = stale_only[0].options
    assert (opts.repo, opts.ref, opts.name, opts.sandbox, opts.api_only, opts.python) == (
        "/h/repos/moved", "main", "moved", True, True, "3.8")
    assert stale_only[0].classes == ("hydro-101",)
    named = {p.name: p for p in plan(verdicts, entries, home_root=Path("/h"), target="sandbox", named=True,
                                     full=False)}
    assert (named["fresh"].mode, named["fresh"].why) == ("full", "named (it is fresh)")
    assert named["unsure"].mode == "full" and "no answer within 30 s" in named["unsure"].why
    [forced] = plan(verdicts[:1], entries, home_root=Path("/h"), target="sandbox", named=False, full=True)
    assert (forced.mode, forced.options.parent) == ("full", None) and forced.why.startswith("--full given")


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Home, Path]]:
    """One home (and emulator) for this module, and a folder for its repositories."""
    root = tmp_path_factory.mktemp("rebuild")
    h = new_home(root / "home")
    yield h, root / "repos"
    stop_emulator(h)


def baked(place: tuple[Home, Path], name: str, requirements: str = "six==1.16.0\n") -> tuple[Home, Path]:
    """A new git repo `name`, baked API-only in the sandbox (one region, to keep it quick)."""
    h, repos = place
    repo = commit_repo(repos / name, {"requirements.txt": requirements, "a.py": "print(1)\n"})
    run_cli(h, "bake", "--api-only", "--no-resolve", "--repo", repo.as_uri(), "--regions", "us-west-2", check=True)
    return h, repo


def commit(repo: Path, line: str) -> str:
    (repo / "a.py").write_text((repo / "a.py").read_text() + line + "\n")
    git(repo, "commit", "-q", "-am", line)
    return git(repo, "rev-parse", "HEAD")


def verdict(h: Home, name: str) -> dict[str, Any]:
    out = json.loads(run_cli(h, "stale", "--names", name, "--json", check=True).stdout)
    assert [i["name"] for i in out["images"]] == [name]
    return dict(out["images"][0])


def plan_of(h: Home, *args: str) -> list[dict[str, Any]]:
    return list(json.loads(run_cli(h, "rebuild", *args, "--dry-run", "--json", check=True).stdout)["plan"])


def latest(h: Home, name: str) -> catalog.Build:
    build = catalog.load(h.catalog_path("sandbox")).image(name).latest_build()
    assert build is not None
    return build


def test_a_new_commit_is_stale_and_rebuild_stale_bakes_it(place: tuple[Home, Path]) -> None:
    h, repo = baked(place, "moves")
    first = latest(h, "moves")
    assert first.contract_digest and first.contract_digest.startswith("sha256:")
    assert verdict(h, "moves") == {"name": "moves", "latest": first.id, "status": "fresh", "reasons": [],
                                   "unknown": [], "incremental": False}

    new = commit(repo, "print(2)")
    v = verdict(h, "moves")
    assert v["status"] == "stale" and v["incremental"]
    assert [(r["kind"], r["old"], r["new"]) for r in v["reasons"]] == [("commit", first.commit, new)]
    assert "commit moved" in v["reasons"][0]["detail"]
    text = run_cli(h, "stale", check=True).stdout
    assert "commit moved" in text and "moves" in text

    [planned] = [p for p in plan_of(h, "--stale") if p["name"] == "moves"]
    assert (planned["mode"], planned["parent"]) == ("incremental", first.id)
    assert "only the commit moved" in planned["why"]
    [forced] = plan_of(h, "moves", "--full")
    assert (forced["mode"], forced["parent"]) == ("full", None) and "--full" in forced["why"]

    done = run_cli(h, "rebuild", "--stale", "--json", check=True)
    results = {r["name"]: r for r in json.loads(done.stdout)["results"]}
    assert results["moves"]["status"] == "available"
    assert "[moves] " in done.stderr  # each bake's progress, prefixed with its image
    second = latest(h, "moves")
    assert second.id == results["moves"]["build_id"] != first.id and second.commit == new
    assert verdict(h, "moves")["status"] == "fresh"


def test_an_edited_recipe_is_a_full_rebuild(place: tuple[Home, Path]) -> None:
    h, repo = baked(place, "edited")
    recipe = h.recipe_path("edited")
    recipe.write_text(recipe.read_text().replace("port: 8889", "port: 8890"))
    commit(repo, "print(3)")
    v = verdict(h, "edited")
    assert [r["kind"] for r in v["reasons"]] == ["commit", "recipe"] and not v["incremental"]
    [planned] = plan_of(h, "edited")
    assert (planned["mode"], planned["parent"]) == ("full", None)
    assert "recipe changed" in planned["why"] and "commit moved" in planned["why"]


def test_a_newer_canonical_image_is_a_base_image_reason(place: tuple[Home, Path]) -> None:
    h, _repo = baked(place, "based")
    before = latest(h, "based").base_ami["us-west-2"]
    made = publish_base(h.emulator_dir, "22.04", "20991231")
    v = verdict(h, "based")
    assert v["status"] == "stale" and not v["incremental"]
    [reason] = v["reasons"]
    assert (reason["kind"], reason["old"]) == ("base-image", before)
    assert reason["new"] in made["us-west-2"] and "us-west-2" in reason["detail"]
    run_cli(h, "sandbox.down", check=True)  # the published image outlives a restart
    assert verdict(h, "based")["reasons"] == [reason]
    with pytest.raises(SandboxError, match=r"no Ubuntu 22\.10 in the sandbox"):
        publish_base(h.emulator_dir, "22.10", "20991231")


def test_an_unreachable_repository_is_unknown_never_fresh(place: tuple[Home, Path]) -> None:
    h, repo = baked(place, "gone")
    shutil.move(repo, repo.with_name("gone-moved"))
    v = verdict(h, "gone")
    assert v["status"] == "unknown" and v["reasons"] == [] and not v["incremental"]
    assert [u["kind"] for u in v["unknown"]] == ["commit"]
    assert "gone" in v["unknown"][0]["detail"]


@pytest.mark.network
def test_unpinned_requirements_that_resolve_to_other_versions_are_listed(place: tuple[Home, Path]) -> None:
    h, _repo = baked(place, "unpinned", requirements="six\n")
    installed = {"packages": [{"name": "six", "version": "1.15.0"}, {"name": "ipykernel", "version": "6.0.0"}]}

    def provisioned(c: catalog.Catalog) -> catalog.Catalog:  # as a provisioned build records it
        entry = c.image("unpinned")
        build = replace(entry.builds[-1], provisioned=True, image_manifest=installed)
        return catalog.record(c, name=entry.name, repo=entry.repo, recipe=entry.recipe,
                              recipe_digest=entry.recipe_digest, build=build)

    catalog.update(h.catalog_path("sandbox"), provisioned)
    shutil.rmtree(h.cache_dir / "git")  # as on a fresh CI runner: the build's commit is fetched again
    v = verdict(h, "unpinned")
    assert v["status"] == "stale" and not v["incremental"]
    [reason] = v["reasons"]
    assert (reason["kind"], reason["old"]) == ("packages", "six==1.15.0")
    assert reason["new"].startswith("six==") and reason["new"] != "six==1.15.0"
    assert "six would resolve to" in reason["detail"]


def test_one_failure_does_not_stop_the_others_and_the_class_gets_the_new_build(place: tuple[Home, Path]) -> None:
    h, ok_repo = baked(place, "shared")
    _, bad_repo = baked(place, "broken")
    doc = rosters.new_document(title="t", regions=("us-west-2",), accounts=[{"id": STUDENTS[0]}],
                               start=date(2026, 1, 12), end=date(2026, 3, 20), kms_key=CLASS_KEY_ALIAS)
    rosters.write_new(h.root, "rebuild-101", doc, force=True)
    run_cli(h, "share", "shared", "--class", "rebuild-101", check=True)
    old = latest(h, "shared")
    commit(ok_repo, "print(4)")
    shutil.rmtree(bad_repo)

    done = run_cli(h, "rebuild", "shared,broken", "--max-parallel", "2", "--json")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: rebuild failed for broken")
    results = {r["name"]: r for r in json.loads(done.stdout)["results"]}
    assert results["broken"]["status"] == "failed" and results["broken"]["error"]
    assert results["broken"]["build_id"] is None  # it failed fetching the repository: before any build record
    assert results["shared"]["status"] == "available" and results["shared"]["shared"] == ["rebuild-101"]
    cat = catalog.load(h.catalog_path("sandbox")).image("shared")
    new = cat.latest_build()
    assert new is not None and new.id == results["shared"]["build_id"]
    assert [s["class"] for s in new.shares] == ["rebuild-101"]
    assert [s["class"] for s in cat.build(old.id).shares] == ["rebuild-101"]  # the previous build stays shared


def test_a_signal_stops_every_bake_and_records_the_started_one_interrupted(place: tuple[Home, Path]) -> None:
    h, repo_a = baked(place, "stop-a")
    _, repo_b = baked(place, "stop-b")
    commit(repo_a, "print(5)")
    commit(repo_b, "print(5)")
    names = ("stop-a", "stop-b")
    before = {n: len(catalog.load(h.catalog_path("sandbox")).image(n).builds) for n in names}
    argv = [sys.executable, "-c", "from imagefactory.main import program; program.run()", "rebuild", ",".join(names)]
    code, err = interrupt_at(argv, h.root, cli_env(h), "] packer 1.", signum=signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, err
    first = next(line for line in err.splitlines() if "] packer 1." in line)
    building = first[1:first.index("]")]  # the bake in Packer's build when the signal came
    cat = catalog.load(h.catalog_path("sandbox"))
    new = {n: [b.status for b in cat.image(n).builds[before[n]:]] for n in names}
    assert new[building] == ["interrupted"], err
    assert all(status == "interrupted" for statuses in new.values() for status in statuses), new  # none finished
    assert "stopping 2 running bake(s)" in err
    leftover = [pid for pid in os.listdir("/proc") if pid.isdigit() and _mentions(pid, str(h.root))]
    assert leftover == [], err


def _mentions(pid: str, text: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return text in cmdline and "sandbox.server" not in cmdline

"""A provisioned sandbox bake killed outright (SIGKILL to the orchestrator only: Packer and the build root's
container are orphaned, as a crash leaves them): `janitor` finds every leftover, `janitor --delete --yes`
removes it, and a second run finds nothing, with no process of the build left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import MakeRepo, kill_bake_mid_provisioning, run_cli

from imagefactory.home import Home
from imagefactory.sandbox import leftovers
from imagefactory.sandbox.host import sandbox_supported
from imagefactory.sandbox.teardown import naming

pytestmark = pytest.mark.network  # a provisioned bake: apt and uv reach the package indexes before it is killed


def _janitor(home: Home, *args: str) -> dict:
    done = run_cli(home, "janitor", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_janitor_after_a_killed_bake_removes_every_leftover(home: Home, make_repo: MakeRepo) -> None:
    ok, why = sandbox_supported()
    assert ok, f"the sandbox cannot run here: {why}"
    repo = make_repo({"runtime.txt": "python-3.11\n", "requirements.txt": "six\n"}, name="crashy")
    build_dir = kill_bake_mid_provisioning(home, repo)
    try:
        _check_the_janitor_removes_everything(home, build_dir)
    finally:  # a failing check must not leave the build root's container running on the machine
        leftovers.remove(home, leftovers.find(home), lambda line: None)


def _check_the_janitor_removes_everything(home: Home, build_dir: Path) -> None:
    assert naming(build_dir), "the killed bake's Packer should outlive it (orphaned, as after a crash)"

    found = _janitor(home)
    kinds = {f["kind"]: f for f in found["findings"]}
    assert {"processes", "rootfs", "build instance", "security group", "key pair"} <= set(kinds), found
    instance = kinds["build instance"]
    assert instance["tags"]["imagefactory:role"] == "build" and instance["region"] == "us-west-2"
    assert instance["tags"]["imagefactory:build-id"] == build_dir.name
    assert build_dir.name in instance["evidence"] and instance["monthly_usd"] is not None
    assert kinds["security group"]["name"].startswith("packer_")
    assert 0 <= kinds["security group"]["age_seconds"] < 600  # the time in Packer's time-ordered name
    assert kinds["key pair"]["id"] == f"{leftovers.BUILD_KEY_PREFIX}{build_dir.name}"
    assert all(f["build_dir"] == str(build_dir) for f in found["findings"]), found["findings"]

    removed = _janitor(home, "--delete", "--yes")
    assert removed["failed"] == [] and len(removed["removed"]) == len(found["findings"]), removed
    again = _janitor(home)
    assert again["findings"] == [], again
    assert leftovers.sandbox_processes(home) == [] and naming(build_dir) == []
    assert not (build_dir / "rootfs").exists()

"""A bake killed mid-build (SIGKILL: no clean-up runs) leaves only what can be found and removed: the
next bake names it with the command that removes it, and `sandbox.down --force` removes it."""

from __future__ import annotations

import pytest
from conftest import MakeRepo, kill_bake_mid_provisioning, run_cli, sandbox_client

from imagefactory.home import Home
from imagefactory.sandbox import leftovers
from imagefactory.sandbox.emulator import ensure_up
from imagefactory.sandbox.host import sandbox_supported

pytestmark = pytest.mark.network  # a provisioned bake: apt and uv reach the package indexes before it is killed


def test_a_killed_bake_leaves_nothing_that_cannot_be_found_and_removed(home: Home, make_repo: MakeRepo) -> None:
    ok, why = sandbox_supported()
    assert ok, f"the sandbox cannot run here: {why}"
    repo = make_repo({"runtime.txt": "python-3.11\n", "requirements.txt": "six\n"}, name="crashy")
    build_dir = kill_bake_mid_provisioning(home, repo)

    left = leftovers.find(home)
    kinds = {item.kind for item in left}
    assert {"rootfs", "processes", "key pair", "instance", "security group"} <= kinds, left
    assert all(item.build_dir == str(build_dir) for item in left)
    assert leftovers.sandbox_processes(home), "the build root's sshd outlived the bake"

    old = make_repo({"runtime.txt": "python-3.8\n", "requirements.txt": "six\n"}, name="next-bake")
    following = run_cli(home, "bake", "--repo", old.as_uri(), "--no-resolve")  # reports, then stops early
    assert "leftover(s) of 1 crashed build(s)" in following.stderr and build_dir.name in following.stderr
    assert f"remove them with: {leftovers.REMOVE_COMMAND}" in following.stderr

    down = run_cli(home, "sandbox.down", "--force")
    assert down.returncode == 0, down.stderr
    assert "removed instance" in down.stderr and "removed rootfs" in down.stderr
    assert leftovers.sandbox_processes(home) == []
    assert not (build_dir / "rootfs").exists()
    assert not list(home.builds_dir("sandbox").glob("*/*/rootfs"))
    info = ensure_up(home.emulator_dir)  # the emulator restarts from its saved state: nothing of the build is back
    ec2 = sandbox_client(info.endpoint)
    assert [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]] == []
    groups = [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]]
    assert not [g for g in groups if g.startswith("packer_")]
    live = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": leftovers.LIVE_STATES}])
    assert live["Reservations"] == []
    assert leftovers.find(home) == []

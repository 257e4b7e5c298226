"""Stopping a provisioned sandbox bake for real, mid-provisioning: Ctrl-C as a terminal sends it, and the
emulator dying. Each bake runs the real Packer against the real emulator and a real build root until the
repository's postBuild script sleeps; then it is stopped, and must end within seconds, leaving no AMI and
no process, and recording what happened."""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import MakeRepo, build_amis, cli_env, home_processes

from imagefactory import catalog
from imagefactory.home import Home
from imagefactory.sandbox.emulator import status

pytestmark = pytest.mark.network  # provisioned bakes: uv and apt install from the package indexes

SLEEPER = "#!/bin/bash\necho 'if-cancel-probe: sleeping'\nexec -a if-cancel-probe-{tag} sleep 120\n"
REACHED = "if-cancel-probe: sleeping"
PROVISION_TIMEOUT = 900.0
PACKER_STOPS = 10.0  # seconds from the signal until Packer says it cancelled (measured: under 1 s)
EXIT_TIMEOUT = 60.0  # ... until the bake has exited: the build root's teardown removes a ~600 MB tree (measured:
#                      5 s idle, 33 s with the machine's two cores busy)


class Bake:
    """`invoke bake` as a subprocess in its own session (as a shell runs a job), its stderr followed."""

    def __init__(self, home: Home, repo: Path) -> None:
        argv = [sys.executable, "-c", "from imagefactory.main import program; program.run()", "bake", "--sandbox",
                "--no-resolve", "--repo", repo.as_uri()]
        self.proc = subprocess.Popen(argv, cwd=home.root, env=cli_env(home), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        self._started = time.monotonic()
        self._stamped: list[tuple[float, str]] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stamped.append((time.monotonic(), line))
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"the bake ended before {text!r}:\n{self.output()}")
            self.lines.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} within {timeout:.0f} s:\n{self.output()}")

    def ended(self, timeout: float) -> tuple[int, float]:
        """(exit code, seconds it took) once the process has exited; its output is then complete."""
        started = time.monotonic()
        code = self.proc.wait(timeout=timeout)
        took = time.monotonic() - started
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        return code, took

    def output(self) -> str:
        """Everything it printed, each line with the seconds since it started."""
        return "".join(f"{at - self._started:6.1f} {line}" for at, line in self._stamped)

    def seconds_until(self, text: str, since: float) -> float:
        """Seconds from `since` (a time.monotonic()) until it printed a line holding `text`."""
        at = next((at for at, line in self._stamped if at >= since and text in line), None)
        assert at is not None, f"no {text!r} after the signal:\n{self.output()}"
        return at - since


def sleeper_repo(make_repo: MakeRepo, name: str) -> tuple[Path, str]:
    tag = secrets.token_hex(4)
    return make_repo({"runtime.txt": "python-3.11\n", "postBuild": SLEEPER.format(tag=tag)}, name=name), tag


def only_build(home: Home, name: str) -> catalog.Build:
    (build,) = catalog.load(home.catalog_path("sandbox")).images[name].builds
    return build


def ssh_port(build_dir: Path) -> int:
    return json.loads((build_dir / "imagefactory.pkrvars.json").read_text())["ssh_port"]


def test_ctrl_c_mid_provisioning_cancels_packer_within_seconds(home: Home, make_repo: MakeRepo) -> None:
    repo, tag = sleeper_repo(make_repo, "long-post-build")
    bake = Bake(home, repo)
    bake.wait_for(REACHED, PROVISION_TIMEOUT)
    sent = time.monotonic()
    os.killpg(bake.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the job's process group only
    code, took = bake.ended(timeout=EXIT_TIMEOUT)
    assert code == 130 and took < EXIT_TIMEOUT, f"exit {code} after {took:.0f} s:\n{bake.output()}"
    assert bake.seconds_until("Cleanly cancelled builds after being interrupted", sent) < PACKER_STOPS, bake.output()
    last = bake.lines[-1].strip()
    assert last.startswith("error: interrupted: cancelled by Ctrl-C during Packer's step"), bake.output()
    build = only_build(home, "long-post-build")
    assert build.status == "interrupted" and not build.amis
    assert build.error is not None and "60-post-build" in build.error
    assert "no AMI had been created (none of this build exists)" in build.error
    assert build_amis(home, build.id) == []
    assert home_processes(home, naming=f"if-cancel-probe-{tag}") == []
    build_dir = Path(build.build_dir or "")
    assert stat.S_IMODE(build_dir.stat().st_mode) == 0o700
    assert not (build_dir / "provision" / "repo.tar").exists(), "the copy of the repo is gone"
    log = (build_dir / "packer.log").read_text()
    assert f"Authorizing access to port {ssh_port(build_dir)} from [127.0.0.1/32]" in log, "ssh from the caller only"


def test_the_emulator_dying_mid_provisioning_ends_the_bake_in_one_line(home: Home, make_repo: MakeRepo) -> None:
    repo, tag = sleeper_repo(make_repo, "orphaned-build")
    bake = Bake(home, repo)
    bake.wait_for(REACHED, PROVISION_TIMEOUT)
    emulator = status(home.emulator_dir)
    assert emulator is not None
    killed = time.monotonic()
    os.kill(emulator.pid, signal.SIGKILL)
    code, took = bake.ended(timeout=EXIT_TIMEOUT)
    assert code == 1 and took < EXIT_TIMEOUT, f"exit {code} after {took:.0f} s:\n{bake.output()}"
    assert bake.seconds_until("cancelling: asked Packer to stop", killed) < 5, bake.output()
    assert "Traceback" not in bake.output()
    assert bake.lines[-1].startswith(f"error: the sandbox emulator (pid {emulator.pid}) stopped during the build;")
    build = only_build(home, "orphaned-build")
    assert build.status == "failed" and build.error is not None
    assert build.error.startswith(f"the sandbox emulator (pid {emulator.pid}) stopped during the build")
    assert "could not check for AMIs of this build: the sandbox emulator is not running" in build.error
    assert home_processes(home, naming=f"if-cancel-probe-{tag}") == []

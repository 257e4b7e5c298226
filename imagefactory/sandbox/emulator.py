"""Lifecycle of the sandbox EC2 emulator: start on demand, reuse, report, stop.

The emulator is one detached process per state directory (`python -m imagefactory.sandbox.server`), bound
to 127.0.0.1 on a free port. It outlives the command that started it, so later commands reuse it. The state
directory holds:

    server.json   pid and port of the running server (written by the server once it serves)
    server.log    its output (the previous run's in server.log.1)
    state.json    what users made in the sandbox, restored on the next start
    server.lock   the file lock (`imagefactory.files.locked`) held while starting or stopping, so exactly
                  one server starts

This module imports neither moto nor boto3: asking for the endpoint costs a file read and one HTTP probe.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagefactory.errors import FactoryError, SandboxError
from imagefactory.files import locked
from imagefactory.waiting import WaitTimeout, wait_for

SANDBOX_ACCOUNT_ID = "123456789012"
SERVER_FILE = "server.json"
STATE_FILE = "state.json"
LOG_FILE = "server.log"
LOCK_NAME = "server"  # the lock file is server.lock
HEALTH_PATH = "/_imagefactory/health"
PUBLISH_PATH = "/_imagefactory/publish-base"  # POST {"version": "22.04", "serial": "YYYYMMDD"}
SERVER_MARKER = "imagefactory-sandbox"
_SERVER_MODULE = "imagefactory.sandbox.server"
_POLL = 0.05
_TERM_GRACE = 5.0
_KILL_GRACE = 2.0

# Servers started by this process, kept so they are reaped (a dead child stays a zombie until waited for).
_started: dict[int, subprocess.Popen[bytes]] = {}
# Talk to the emulator directly, whatever HTTP(S)_PROXY says.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class EmulatorInfo:
    """A running emulator."""

    endpoint: str  # "http://127.0.0.1:PORT"
    port: int
    pid: int
    state_dir: Path
    reused: bool  # True when it was already running (always True from `status`)


def sandbox_credentials() -> dict[str, str]:
    """Environment variables that make boto3 and Packer talk to the emulator with dummy credentials."""
    return {"AWS_ACCESS_KEY_ID": "imagefactory-sandbox", "AWS_SECRET_ACCESS_KEY": "imagefactory-sandbox"}


# ------------------------------------------------------------------------------------------ public API
def publish_base(state_dir: Path, version: str, serial: str) -> dict[str, list[str]]:
    """Make the running emulator publish a newer Canonical Ubuntu `version` build `serial` in every region
    (what Canonical does every few weeks); returns the new image IDs per region."""
    info = ensure_up(state_dir)
    body = json.dumps({"version": version, "serial": serial}).encode()
    request = urllib.request.Request(f"{info.endpoint}{PUBLISH_PATH}", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with _opener.open(request, timeout=30.0) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        raise SandboxError(f"the sandbox emulator refused to publish Ubuntu {version} {serial}: "
                           f"{exc.read().decode(errors='replace')[:200]}",
                           "give a known release (22.04, 24.04) and a serial YYYYMMDD[.N]") from None


def ensure_up(state_dir: Path, *, timeout: float = 20.0) -> EmulatorInfo:
    """The running emulator for `state_dir`, started first when none runs. Safe to call concurrently."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with _locked(state_dir, deadline):
        info = _running(state_dir)
        if info is None:
            _unlink(state_dir / SERVER_FILE)
            return _start(state_dir, deadline, timeout)
        if not _answers_until(info, deadline):
            raise SandboxError(
                f"the EC2 emulator (pid {info.pid}) runs but does not answer on {info.endpoint}",
                f"see {state_dir / LOG_FILE}; stop it (kill {info.pid}) and retry",
            )
        return info


def status(state_dir: Path) -> EmulatorInfo | None:
    """The running emulator, or None (a server.json left by a dead server is removed)."""
    state_dir = Path(state_dir)
    info = _running(state_dir)
    if info is None and (state_dir / SERVER_FILE).exists():
        _clean_stale(state_dir)
    return info


def state_dir_at(endpoint: str) -> Path | None:
    """The state directory of the sandbox emulator answering at `endpoint` (None: not one of ours)."""
    try:
        with _opener.open(f"{endpoint.rstrip('/')}{HEALTH_PATH}", timeout=2.0) as response:
            data = json.loads(response.read())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("service") != SERVER_MARKER or not data.get("state_dir"):
        return None
    return Path(data["state_dir"])


def down(state_dir: Path) -> bool:
    """Stop the emulator (SIGTERM, then SIGKILL after a few seconds); True when one was running."""
    state_dir = Path(state_dir)
    if not state_dir.is_dir():
        return False
    with _locked(state_dir, time.monotonic() + _TERM_GRACE + _KILL_GRACE + 10):
        info = _running(state_dir)
        if info is not None:
            _stop(info.pid)
        _unlink(state_dir / SERVER_FILE)
        return info is not None


# ---------------------------------------------------------------------------------------------- pieces
def _locked(state_dir: Path, deadline: float) -> AbstractContextManager[None]:
    """Hold the state directory's lock; waits for another starter/stopper, at most until `deadline`."""
    return locked(state_dir / LOCK_NAME, timeout=max(0.0, deadline - time.monotonic()),
                  what="the EC2 emulator (another process is starting or stopping it)")


def _clean_stale(state_dir: Path) -> None:
    """Remove a stale server.json, unless someone is starting or stopping a server right now."""
    try:
        with locked(state_dir / LOCK_NAME, timeout=0):
            if _running(state_dir) is None:
                _unlink(state_dir / SERVER_FILE)
    except FactoryError:
        return


def _read_server_file(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / SERVER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int) or not isinstance(data.get("port"), int):
        return None
    return data


def _info(state_dir: Path, data: dict[str, Any], *, reused: bool) -> EmulatorInfo:
    port = data["port"]
    return EmulatorInfo(f"http://127.0.0.1:{port}", port, data["pid"], state_dir, reused)


def _running(state_dir: Path) -> EmulatorInfo | None:
    """What server.json names, if that process is alive and is our server."""
    data = _read_server_file(state_dir)
    if data is None or not _alive(data["pid"]) or not _is_server(data["pid"]):
        return None
    return _info(state_dir, data, reused=True)


def _alive(pid: int) -> bool:
    proc = _started.get(pid)
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_state(pid) != "Z"


def _proc_state(pid: int) -> str:
    """The state letter from /proc/PID/stat ("" where there is no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[0]


def _is_server(pid: int) -> bool:
    """Guards against a reused pid: the process must run our server module (checked where /proc exists)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return True
    return _SERVER_MODULE.encode() in cmdline


def _answers(info: EmulatorInfo) -> bool:
    """One probe of the server's health endpoint; it must answer with the pid we expect."""
    try:
        with _opener.open(f"{info.endpoint}{HEALTH_PATH}", timeout=1.0) as response:
            data = json.loads(response.read())
    except (OSError, ValueError):
        return False
    return data.get("service") == SERVER_MARKER and data.get("pid") == info.pid


def _answers_until(info: EmulatorInfo, deadline: float) -> bool:
    try:
        wait_for(lambda: _answers(info), timeout=max(0.0, deadline - time.monotonic()), interval=_POLL,
                 abort=lambda: None if _alive(info.pid) else "it exited", what="the emulator's health probe")
    except WaitTimeout:
        return False
    return True


def _server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MOTO_AMIS_PATH", None)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn(state_dir: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", _SERVER_MODULE, "--port", "0", "--state-dir", str(state_dir.resolve())]
    log_path = state_dir / LOG_FILE
    if log_path.exists():
        log_path.replace(log_path.with_name(f"{LOG_FILE}.1"))  # the previous run's log, one generation
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=state_dir,
            env=_server_env(),
            start_new_session=True,  # detached: outlives this command and its Ctrl-C
        )
    _started[proc.pid] = proc
    return proc


def _start(state_dir: Path, deadline: float, timeout: float) -> EmulatorInfo:
    """Spawn a server and wait until it has written server.json and answers its health probe."""
    proc = _spawn(state_dir)
    log = state_dir / LOG_FILE

    def ready() -> EmulatorInfo | None:
        data = _read_server_file(state_dir)
        if data is None or data["pid"] != proc.pid:
            return None
        info = _info(state_dir, data, reused=False)
        return info if _answers(info) else None

    def exited() -> str | None:
        code = proc.poll()
        return None if code is None else f"exited with code {code} while starting: {_last_line(log)}"

    try:
        return wait_for(ready, timeout=max(0.0, deadline - time.monotonic()), interval=_POLL, abort=exited,
                        what="the EC2 emulator")
    except WaitTimeout as exc:
        if proc.poll() is not None:
            raise SandboxError(f"the EC2 emulator exited with code {proc.returncode} while starting: "
                               f"{_last_line(log)}", f"see {log}") from None
        _stop(proc.pid)
        raise SandboxError(f"the EC2 emulator did not answer within {timeout:g} s", f"see {log}") from exc


def _last_line(path: Path) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"


def _wait_gone(pid: int, seconds: float) -> bool:
    try:
        wait_for(lambda: not _alive(pid), timeout=seconds, interval=_POLL, what=f"process {pid} to exit")
    except WaitTimeout:
        return False
    return True


def _stop(pid: int) -> None:
    """SIGTERM (the server saves its state and exits), then SIGKILL if it lingers."""
    for signum, grace in ((signal.SIGTERM, _TERM_GRACE), (signal.SIGKILL, _KILL_GRACE)):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            break
        if _wait_gone(pid, grace):
            break
    _started.pop(pid, None)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)

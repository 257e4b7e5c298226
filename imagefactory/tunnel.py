"""The ssh tunnel to an instance's JupyterLab: how to ssh into one instance (`Endpoint`, `ssh_argv`), and
a running `ssh -N -L` forward that is waited on until JupyterLab answers through it, held until Ctrl-C
(or SIGTERM, or ssh ending) and always closed: no ssh process is left behind.

ssh checks host keys per instance (`HostKeyAlias` = instance id, in ~/.ssh/imagefactory-known-hosts/);
the sandbox writes the instance's freshly made host keys there at launch, AWS instances are trusted on
first use.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from imagefactory.errors import CloudError
from imagefactory.proc import MissingProgram
from imagefactory.waiting import WaitTimeout, wait_for

Progress = Callable[[str], None]
LAB_WAIT = 180.0


@dataclass(frozen=True)
class Endpoint:
    """How to ssh into one instance."""

    instance_id: str
    region: str
    host: str
    port: int
    user: str
    key: Path
    jupyter_port: int | None  # known locally (sandbox); else read from the instance

    @property
    def known_hosts(self) -> Path:
        return Path.home() / ".ssh" / "imagefactory-known-hosts" / self.instance_id


def ssh_argv(ep: Endpoint, *extra: str, command: str | None = None) -> list[str]:
    ep.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    options = {"IdentitiesOnly": "yes", "BatchMode": "yes", "UserKnownHostsFile": str(ep.known_hosts),
               "StrictHostKeyChecking": "accept-new", "HostKeyAlias": ep.instance_id, "ConnectTimeout": "10",
               "ServerAliveInterval": "30", "LogLevel": "ERROR"}
    argv = ["ssh", "-i", str(ep.key), "-p", str(ep.port), "-F", "none"]
    for key, value in options.items():
        argv += ["-o", f"{key}={value}"]
    return [*argv, *extra, f"{ep.user}@{ep.host}", *([command] if command else [])]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Tunnel:
    """A running `ssh -N -L` and the lab URL it serves."""

    url: str
    local_port: int
    process: subprocess.Popen[str]

    def ended(self) -> str | None:
        """Why the tunnel is gone (ssh exited), or None while it runs."""
        code = self.process.poll()
        return None if code is None else f"ssh exited with code {code}"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stderr:
            self.process.stderr.close()

    def hold(self, progress: Progress) -> None:
        """Keep the tunnel open until Ctrl-C (or SIGTERM, or ssh ending); always close it."""
        def stop(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, stop)
        try:
            progress(f"tunnel open on localhost:{self.local_port}; press Ctrl-C to close it")
            code = self.process.wait()
            raise CloudError(f"the ssh tunnel ended (exit code {code})", "is the instance still running?")
        except KeyboardInterrupt:
            progress("tunnel closed")
        finally:
            self.close()
            signal.signal(signal.SIGTERM, previous)


def open_tunnel(ep: Endpoint, local_port: int, jupyter_port: int, token: str) -> Tunnel:
    if not _port_free(local_port):
        raise CloudError(f"local port {local_port} is in use", "pass --local-port with a free port")
    argv = ssh_argv(ep, "-N", "-o", "ExitOnForwardFailure=yes", "-L",
                    f"127.0.0.1:{local_port}:localhost:{jupyter_port}")
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
    except FileNotFoundError:
        raise MissingProgram("ssh") from None
    tunnel = Tunnel(f"http://localhost:{local_port}/lab?token={token}", local_port, process)
    try:
        _wait_forward(tunnel)
        _wait_lab(tunnel, token)
    except BaseException:
        tunnel.close()
        raise
    return tunnel


def _wait_forward(tunnel: Tunnel, wait: float = 30.0) -> None:
    def forwarding() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", tunnel.local_port), timeout=1):
                return True
        except OSError:
            return False

    try:
        wait_for(forwarding, timeout=wait, interval=0.2, abort=tunnel.ended, what="the tunnel")
    except WaitTimeout:
        if tunnel.process.poll() is not None:
            err = tunnel.process.stderr.read() if tunnel.process.stderr else ""
            last = (err.strip().splitlines() or ["no output"])[-1]
            raise CloudError(f"ssh could not open the tunnel: {last}",
                             "check the instance runs and the key matches") from None
        raise CloudError(f"the tunnel on localhost:{tunnel.local_port} did not open in {wait:.0f} s",
                         "retry") from None


def _wait_lab(tunnel: Tunnel, token: str, wait: float = LAB_WAIT) -> None:
    """Until JupyterLab answers /api/status through the tunnel (it may still be starting)."""
    import requests

    session = requests.Session()
    session.trust_env = False  # never send the token through a proxy
    url = f"http://127.0.0.1:{tunnel.local_port}/api/status"

    def answers() -> bool:
        try:
            return session.get(url, headers={"Authorization": f"token {token}"}, timeout=5).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(answers, timeout=wait, interval=1.0, abort=tunnel.ended, what="JupyterLab")
    except WaitTimeout:
        raise CloudError(f"JupyterLab did not answer through the tunnel within {wait:.0f} s",
                         "see 'systemctl status imagefactory-jupyter' on the instance") from None

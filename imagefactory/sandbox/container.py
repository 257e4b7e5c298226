"""The container boundary every build root and sandbox instance runs in: systemd-nspawn.

What runs inside (sshd, everything Packer runs through it, a repository's postBuild, JupyterLab) gets:

- its own PID, IPC, UTS and mount namespaces (the mount namespace is pivoted onto the rootfs, so no
  host path is reachable; /tmp stays on the rootfs as on EC2);
- a minimal /dev (null, zero, full, random, urandom, tty, pts, ptmx, shm, mqueue): no host device;
- /sys and /proc/sys read-only, and /proc of its own PID namespace;
- a bounding set cut to `KEEP_CAPS` (what apt, dpkg, useradd, sudo, sshd and uv need) and nspawn's
  seccomp filter; SYS_ADMIN, SYS_MODULE, SYS_RAWIO, SYS_PTRACE, SYS_BOOT, SYS_TIME, MKNOD, NET_ADMIN,
  NET_RAW, DAC_READ_SEARCH, LINUX_IMMUTABLE and the rest are gone;
- the host's network (sshd on 127.0.0.1, the package index reachable) and a copy of its resolv.conf.

bubblewrap was measured first: it always sets no_new_privs and mounts nosuid, so `sudo` (which the
provisioning scripts run, as on EC2) cannot work under it; nspawn keeps setuid working.

`start` runs a command as the container's main process; `enter_argv` wraps an argv to run inside a
running container (its namespaces and root, `KEEP_CAPS` only, optionally as a user) for what the
host starts later (a command of `BuildRoot.run`, an instance's JupyterLab).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from pathlib import Path

from imagefactory.sandbox.host import CLEAN_ENV

# Measured (bookworm, Packer's stages, apt-get install, useradd, sudo -n, uv pip install, sshd -D):
# SYS_CHROOT stays because sshd's privilege separation chroots to /run/sshd (it refuses to serve
# without it); the chroot is inside the pivoted namespace, so it reaches nothing of the host.
KEEP_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
             "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_AUDIT_WRITE")
# systemd-nspawn's default bounding set (systemd 252) minus KEEP_CAPS: dropped explicitly.
NSPAWN_DEFAULT_CAPS = (
    "CAP_AUDIT_CONTROL", "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER", "CAP_FSETID", "CAP_IPC_OWNER", "CAP_KILL", "CAP_LEASE", "CAP_LINUX_IMMUTABLE",
    "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID",
    "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_CHROOT", "CAP_SYS_NICE",
    "CAP_SYS_PTRACE", "CAP_SYS_RESOURCE", "CAP_SYS_TTY_CONFIG",
)  # fmt: skip
DROP_CAPS = tuple(c for c in NSPAWN_DEFAULT_CAPS if c not in KEEP_CAPS)
HOSTNAME = "sandbox"
MACHINE_PREFIX = "if-"


def machine_name(root: Path) -> str:
    """A name unique per rootfs (nspawn keys its lock and propagation folders on it)."""
    return MACHINE_PREFIX + hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]


def nspawn_argv(root: Path, argv: list[str], *, setenv: dict[str, str] | None = None) -> list[str]:
    """systemd-nspawn arguments that run argv as the container's main process (PID 2, under a stub init)."""
    root = root.resolve()
    env = [f"--setenv={k}={v}" for k, v in (setenv or {}).items()]
    return ["systemd-nspawn", f"--directory={root}", f"--machine={machine_name(root)}", f"--hostname={HOSTNAME}",
            "--register=no", "--keep-unit", "--as-pid2", "--quiet", "--console=pipe", "--resolv-conf=copy-host",
            "--timezone=off", "--link-journal=no", f"--drop-capability={','.join(DROP_CAPS)}", *env, "--", *argv]


def nspawn_env() -> dict[str, str]:
    return dict(CLEAN_ENV, SYSTEMD_NSPAWN_TMPFS_TMP="0")  # /tmp on the rootfs, as on an EC2 disk


def run(root: Path, argv: list[str], *, setenv: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run argv once in a fresh container on root (e.g. first-boot steps of an untrusted image)."""
    return subprocess.run(nspawn_argv(root, argv, setenv=setenv), env=nspawn_env(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, check=False)


def start(root: Path, argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a long-running container (its own session: it outlives a Ctrl-C of the caller's terminal)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(nspawn_argv(root, argv), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=nspawn_env(), start_new_session=True)


def init_pid(nspawn_pid: int) -> int | None:
    """The host PID of the container's PID 1 (nspawn's child), or None while it is not there."""
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{nspawn_pid}/task").iterdir():
            children = (task / "children").read_text().split()
            if children:
                return int(children[0])
    return None


def _in_own_pid_ns(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    except OSError:
        return False


def ready_init(nspawn_pid: int) -> int | None:
    """The container's PID 1 once it lives in its own PID namespace (set up), else None."""
    pid = init_pid(nspawn_pid)
    return pid if pid is not None and _in_own_pid_ns(pid) else None


def enter_argv(init: int, argv: list[str], *, user: str | None = None, workdir: str = "/") -> list[str]:
    """argv run inside the container whose PID 1 is `init`: its namespaces and root, KEEP_CAPS only.

    The working directory is opened inside (nsenter --wdns), never a host directory handed in.
    """
    caps = ",".join(["-all", *(f"+{c.lower().removeprefix('cap_')}" for c in KEEP_CAPS)])
    who = [f"--reuid={user}", f"--regid={user}", "--init-groups"] if user else []
    return ["nsenter", f"--target={init}", "--mount", "--uts", "--ipc", "--pid", "--root", f"--wdns={workdir}",
            "--", "setpriv", f"--bounding-set={caps}", "--inh-caps=-all", *who, "--", *argv]

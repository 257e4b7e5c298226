"""Finding and ending what runs in a rootfs, and removing the tree safely.

A process is "in" a rootfs when its root directory is that tree: a chroot (`readlink /proc/PID/root`
names a path inside it) or a container whose mount namespace was pivoted onto it (the link reads "/"
from here, so the root's device and inode are compared), together with every process of that
container's PID namespace (sshd's privilege-separated children chroot further, to /run/sshd) and the
`systemd-nspawn` that runs it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from pathlib import Path

from imagefactory import proc
from imagefactory.errors import SandboxError
from imagefactory.sandbox.host import inside, run_logged
from imagefactory.waiting import WaitTimeout, wait_for

KILL_GRACE = 5.0


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below root in this machine's mount table, deepest first."""
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        points = [line.split()[4] for line in fh]
    decoded = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), p) for p in points]
    return sorted({p for p in decoded if inside(p, root)}, key=len, reverse=True)


def mounts_below(root: Path) -> list[str]:
    """Mount points strictly below root, deepest first (root itself may be a mount: an overlay build root)."""
    return [p for p in mounts_under(root) if p != str(root.resolve())]


def _pids() -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _pid_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _runs_container_of(pid: int, root: Path) -> bool:
    """True for the systemd-nspawn whose --directory is root."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"systemd-nspawn") and f"--directory={root}".encode() in argv


def processes_in(root: Path) -> list[int]:
    """PIDs whose root directory is root (or inside it), their containers' processes, and its nspawn."""
    if not root.exists():
        return []
    root = root.resolve()
    target = _identity(str(root))
    own_ns = _pid_ns("self")
    found: set[int] = set()
    namespaces: set[str] = set()
    pids = _pids()
    for pid in pids:
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/root")
            if inside(link, root) or (link == "/" and _identity(f"/proc/{pid}/root") == target):
                found.add(pid)
                ns = _pid_ns(pid)
                if ns and ns != own_ns:
                    namespaces.add(ns)
            elif _runs_container_of(pid, root):
                found.add(pid)
    if namespaces:
        found.update(pid for pid in pids if _pid_ns(pid) in namespaces)
    found.discard(os.getpid())
    return sorted(found)


def naming(folder: Path) -> list[int]:
    """PIDs (not this one) whose command line names folder or a path in it (a build's Packer, its ssh)."""
    needle = str(folder.resolve()).encode()
    found = []
    for pid in _pids():
        with contextlib.suppress(OSError):
            if pid != os.getpid() and needle in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def end(pids: list[int], grace: float = KILL_GRACE) -> None:
    """SIGTERM these processes, then SIGKILL those still there after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        for pid in _live(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        with contextlib.suppress(WaitTimeout):
            wait_for(lambda: not _live(pids), timeout=wait, interval=0.1, what="processes to end")


def kill_processes(root: Path, grace: float = KILL_GRACE) -> int:
    """SIGTERM, then after `grace` seconds SIGKILL, every process inside root; return how many."""
    pids = processes_in(root)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        for pid in processes_in(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)  # reap our own children so they do not linger as zombies
        with contextlib.suppress(WaitTimeout):
            wait_for(lambda: not _live(processes_in(root)), timeout=wait, interval=0.1,
                     what=f"processes in {root}")
    left = _live(processes_in(root))
    if left:
        raise SandboxError(f"processes {left} inside {root} survived SIGKILL", "check them with ps")
    return len(pids)


def _live(pids: list[int]) -> list[int]:
    """Those of pids that are not zombies (a zombie is reaped by its parent, it holds nothing)."""
    alive = []
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
                alive.append(pid)
    return alive


def unmount_all(root: Path, *, below_only: bool = False) -> None:
    """Unmount everything at or below root (only below it with `below_only`: a root that is itself a mount,
    an overlay build root, stays), deepest first; lazily if a plain unmount fails."""
    for point in mounts_below(root) if below_only else mounts_under(root):
        if proc.run(["umount", point], check=False).returncode != 0:
            proc.run(["umount", "-l", point], check=False)
    left = mounts_below(root) if below_only else mounts_under(root)
    if left:
        raise SandboxError(f"still mounted under {root}: {', '.join(left)}", "unmount them by hand")


def remove_tree(path: Path) -> None:
    """rm -rf a rootfs safely: processes killed and mounts gone first, never crossing a file system."""
    if not path.exists():
        return
    kill_processes(path)
    unmount_all(path)
    run_logged(["rm", "-rf", "--one-file-system", "--", str(path)])

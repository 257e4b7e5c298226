"""The sandbox data plane: a Debian rootfs on this machine standing in for an EC2 build instance.

- `ensure_base(cache_dir)`: a Debian bookworm minbase made once per machine with debootstrap, cached as
  `debian-bookworm-base-v1.tar.zst`; made under a file lock in a temp dir and renamed into place, so
  two bakes never race and a half-made base is never used.
- `BuildRoot(...)`: a per-build copy of the base with the login user (sudo NOPASSWD, the build's
  authorized key), this machine's CA bundle trusted (TLS-intercepting proxies), and sshd on a free
  loopback port, ready for Packer. /proc, /sys, /dev, /dev/pts, /dev/shm and /run are mounted in a
  private mount namespace owned by sshd: they never show up in this machine's mount table and go away
  with the last process inside. On exit, whatever the cause (error, Ctrl-C, SIGTERM), every process
  whose root is inside the rootfs is killed and any stray mount under it is unmounted; the tree is kept
  for `pack` (on failure it is removed unless `keep_on_failure`).
- `pack(root, dest)` / `unpack(src, dest)`: tar + zstd (multithreaded), the content of a sandbox AMI.
- `sandbox_supported()`: whether this machine can do any of it, or why not.

Run as a module (`python -m imagefactory.sandbox.rootfs ROOT -- CMD...`) it is the small launcher that
mounts inside the new namespace, chroots and execs CMD; `BuildRoot` starts sshd through it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

from imagefactory import proc
from imagefactory.errors import SandboxError

SUITE = "bookworm"
SANDBOX_PYTHON = "3.11"
BASE_PACKAGES = ("openssh-server", "sudo", "ca-certificates", "git", "python3", "python3-venv",
                 "python3-pip", "curl", "procps", "systemd")
BASE_FILE = f"debian-{SUITE}-base-v1.tar.zst"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "IMAGEFACTORY_DEBIAN_MIRROR"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
REQUIRED_TOOLS = ("debootstrap", "unshare", "nsenter", "chroot", "mount", "umount", "tar", "zstd")
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
PEM_RE = re.compile(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")
SSHD_TIMEOUT = 30.0
KILL_GRACE = 5.0

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PackInfo:
    """A packed rootfs: where, its size on disk, and the apparent size of the files in it."""

    path: Path
    packed_bytes: int
    unpacked_bytes: int


def _run(argv: list[str], *, log: Path | None = None) -> str:
    """Run argv with a clean environment; raise SandboxError (argv, exit code, output tail) on failure."""
    result = proc.run(argv, env=CLEAN_ENV, check=False)
    if log is not None:
        with log.open("a", encoding="utf-8") as fh:
            fh.write(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}")
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-800:]
        raise SandboxError(f"{' '.join(argv[:4])} … failed (exit {result.returncode}): {tail}",
                           f"full log in {log}" if log else f"command: {' '.join(argv)}")
    return result.stdout


def sandbox_supported() -> tuple[bool, str]:
    """(True, what is used) when this machine can build sandbox images, else (False, why not)."""
    if not sys.platform.startswith("linux"):
        return False, f"the sandbox rootfs needs Linux, not {sys.platform}"
    if os.geteuid() != 0:
        return False, "the sandbox rootfs needs root (debootstrap, chroot, mounts); run the bake as root"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool, path=CLEAN_ENV["PATH"]) is None]
    if missing:
        return False, f"missing {', '.join(missing)}; apt-get install debootstrap zstd util-linux"
    return True, f"Linux, root, debootstrap at {shutil.which('debootstrap', path=CLEAN_ENV['PATH'])}"


# ---------------------------------------------------------------------------------------- base cache

def pick_mirror(source_texts: Iterable[str], suite: str = SUITE) -> str:
    """The Debian mirror this machine's apt uses for `suite` (one-line or deb822 sources), else default."""
    for text in source_texts:
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
            if "deb" in fields.get("Types", "").split() and suite in fields.get("Suites", "").split():
                uris = [u for u in fields.get("URIs", "").split() if _is_main_mirror(u)]
                if uris:
                    return uris[0]
        for line in text.splitlines():
            words = re.sub(r"\[[^]]*\]", " ", line.split("#")[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == suite and _is_main_mirror(words[1]):
                return words[1]
    return DEFAULT_MIRROR


def _is_main_mirror(uri: str) -> bool:
    return uri.startswith(("http://", "https://")) and "security" not in uri and uri.rstrip("/").endswith(
        "/debian")


def host_mirror() -> str:
    if os.environ.get(MIRROR_ENV):
        return os.environ[MIRROR_ENV]
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    texts = [f.read_text(errors="replace") for f in files if f.is_file() and f.suffix in (".list", ".sources")]
    return pick_mirror(texts)


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    with lock_file.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_base(cache_dir: Path, *, progress: Progress = print, mirror: str | None = None) -> Path:
    """The cached base rootfs tarball, made with debootstrap on first use (about a minute)."""
    target = cache_dir / BASE_FILE
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / f"{BASE_FILE}.lock"):
        if target.is_file():  # another bake made it while we waited
            return target
        for stale in cache_dir.glob(".base-*"):
            remove_tree(stale)
        mirror = mirror or host_mirror()
        progress(f"making the Debian {SUITE} base rootfs from {mirror} (about a minute, once per machine)")
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=".base-", dir=cache_dir))
        try:
            tree = tmp / "rootfs"
            _run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE,
                  str(tree), mirror], log=cache_dir / "debootstrap.log")
            _trim_base(tree)
            info = pack(tree, tmp / BASE_FILE)
            os.replace(info.path, target)
        finally:
            remove_tree(tmp)
        progress(f"base rootfs ready in {time.monotonic() - started:.0f} s: {target} "
                 f"({info.packed_bytes / 1e6:.0f} MB packed, {info.unpacked_bytes / 1e6:.0f} MB unpacked)")
    return target


def _trim_base(tree: Path) -> None:
    """Drop what is per-machine or re-fetched anyway: host keys, .deb files, apt lists."""
    for pattern in ("etc/ssh/ssh_host_*", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_Packages",
                    "var/cache/apt/*.bin"):
        for path in tree.glob(pattern):
            path.unlink()


# ----------------------------------------------------------------------------------- pack / unpack

def pack(root: Path, dest: Path) -> PackInfo:
    """tar + zstd -T0 of the tree at `root` into `dest` (written as dest.part, then renamed)."""
    if mounts_under(root):
        raise SandboxError(f"cannot pack {root}: something is still mounted under it", "unmount it first")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    tar_argv = ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", str(root), "-cf", "-", "."]
    with part.open("wb") as out, tempfile.TemporaryFile() as errors:
        tar = subprocess.Popen(tar_argv, stdout=subprocess.PIPE, stderr=errors, env=CLEAN_ENV)
        assert tar.stdout is not None
        zstd = subprocess.run(["zstd", "-T0", "-3", "-q", "-c"], stdin=tar.stdout, stdout=out,
                              stderr=errors, env=CLEAN_ENV, check=False)
        tar.stdout.close()
        if tar.wait() != 0 or zstd.returncode != 0:
            errors.seek(0)
            part.unlink(missing_ok=True)
            raise SandboxError(f"packing {root} failed: {errors.read().decode(errors='replace')[-800:]}")
    os.replace(part, dest)
    return PackInfo(dest, dest.stat().st_size, tree_bytes(root))


def unpack(src: Path, dest: Path) -> None:
    """Extract a `pack` tarball into `dest` (created if missing), keeping owners, modes and xattrs."""
    dest.mkdir(parents=True, exist_ok=True)
    tar_argv = ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf", "-", "-C", str(dest)]
    with tempfile.TemporaryFile() as errors:
        zstd = subprocess.Popen(["zstd", "-T0", "-dqc", str(src)], stdout=subprocess.PIPE, stderr=errors,
                                env=CLEAN_ENV)
        assert zstd.stdout is not None
        tar = subprocess.run(tar_argv, stdin=zstd.stdout, stderr=errors, env=CLEAN_ENV, check=False)
        zstd.stdout.close()
        if zstd.wait() != 0 or tar.returncode != 0:
            errors.seek(0)
            raise SandboxError(f"unpacking {src} failed: {errors.read().decode(errors='replace')[-800:]}")


def tree_bytes(root: Path) -> int:
    """Apparent size of the files and symlinks under root, each hard-linked inode counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for top, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            st = os.lstat(os.path.join(top, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


# ------------------------------------------------------------------- processes, mounts, safe removal

def _inside(path: str, root: Path) -> bool:
    base = str(root.resolve())
    return path == base or path.startswith(base + "/")


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below root in this machine's mount table, deepest first."""
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        points = [line.split()[4] for line in fh]
    decoded = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), p) for p in points]
    return sorted({p for p in decoded if _inside(p, root)}, key=len, reverse=True)


def processes_in(root: Path) -> list[int]:
    """PIDs whose root directory (/proc/PID/root) is root or inside it."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if _inside(os.readlink(entry / "root"), root):
                    pids.append(int(entry.name))
    return pids


def kill_processes(root: Path, grace: float = KILL_GRACE) -> int:
    """SIGTERM, then after `grace` seconds SIGKILL, every process inside root; return how many."""
    pids = processes_in(root)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        for pid in processes_in(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while processes_in(root) and time.monotonic() < deadline:
            time.sleep(0.1)
    left = processes_in(root)
    if left:
        raise SandboxError(f"processes {left} inside {root} survived SIGKILL", "check them with ps")
    return len(pids)


def unmount_all(root: Path) -> None:
    """Unmount everything at or below root, deepest first; lazily if a plain unmount fails."""
    for point in mounts_under(root):
        if proc.run(["umount", point], check=False).returncode != 0:
            proc.run(["umount", "-l", point], check=False)
    left = mounts_under(root)
    if left:
        raise SandboxError(f"still mounted under {root}: {', '.join(left)}", "unmount them by hand")


def remove_tree(path: Path) -> None:
    """rm -rf a rootfs safely: processes killed and mounts gone first, never crossing a file system."""
    if not path.exists():
        return
    kill_processes(path)
    unmount_all(path)
    _run(["rm", "-rf", "--one-file-system", "--", str(path)])


# -------------------------------------------------------------------------------------- build root

def split_pem(text: str) -> list[str]:
    """The PEM certificates in a bundle, each normalised to end with a newline."""
    return [m.group(0).strip() + "\n" for m in PEM_RE.finditer(text)]


def host_ca_files(extra: Path | None = None) -> list[Path]:
    """This machine's CA bundle, whatever SSL_CERT_FILE / REQUESTS_CA_BUNDLE name, and `extra`."""
    named = [HOST_CA_BUNDLE, *(Path(os.environ[v]) for v in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
                               if os.environ.get(v))]
    if extra is not None:
        named.append(extra)
    unique = dict.fromkeys(p.resolve() for p in named if p.is_file())
    return list(unique)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BuildRoot:
    """A per-build rootfs with sshd on 127.0.0.1:`port` for Packer, as a context manager.

    `root` is the tree, `port` the ssh port, `login_user` the user to connect as. `run(argv)` runs a
    command as root inside (same namespace and root as sshd); `command(argv)` gives that argv for
    Popen. On exit the rootfs is quiesced (no process, no mount) and kept for `pack`; after a failure
    it is removed unless `keep_on_failure`.
    """

    def __init__(self, cache_dir: Path, work_dir: Path, *, login_user: str, authorized_key: str,
                 extra_ca: Path | None = None, keep_on_failure: bool = False, progress: Progress = print) -> None:
        if not USER_RE.fullmatch(login_user):
            raise SandboxError(f"login user {login_user!r} is not a valid user name", "fix image.login_user")
        if "\n" in authorized_key.strip() or not authorized_key.startswith(("ssh-", "ecdsa-", "sk-")):
            raise SandboxError("the authorized key must be one public key line", "pass the .pub text")
        self.cache_dir, self.work_dir = cache_dir, work_dir
        self.login_user, self.authorized_key = login_user, authorized_key.strip()
        self.extra_ca, self.keep_on_failure, self.progress = extra_ca, keep_on_failure, progress
        self.root = work_dir / "rootfs"
        self.port = 0
        self._sshd: subprocess.Popen[bytes] | None = None
        self._old_sigterm: Callable[[int, FrameType | None], object] | int | None = None

    def __enter__(self) -> BuildRoot:
        self._catch_sigterm()
        try:
            base = ensure_base(self.cache_dir, progress=self.progress)
            self.work_dir.mkdir(parents=True, exist_ok=True)
            remove_tree(self.root)
            unpack(base, self.root)
            self._add_user()
            self._trust_host_cas()
            self._network_files()
            _run(["chroot", str(self.root), "ssh-keygen", "-A"])
            self._start_sshd()
        except BaseException:
            self._quiesce()
            self._restore_sigterm()
            remove_tree(self.root)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self._quiesce()
            if exc_type is not None and not self.keep_on_failure:
                remove_tree(self.root)
        finally:
            self._restore_sigterm()

    def command(self, argv: list[str]) -> list[str]:
        """argv wrapped to run as root inside the rootfs (sshd's mount namespace and root)."""
        if self._sshd is None:
            raise SandboxError("the build root is not running", "use it inside its with-block")
        return ["nsenter", f"--target={self._sshd.pid}", "--mount", "--root", "--wd", "--", *argv]

    def run(self, argv: list[str], *, env: dict[str, str] | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv as root inside the rootfs; output captured, exit code returned, never raises."""
        return proc.run(self.command(argv), env=env or CLEAN_ENV, timeout=timeout, check=False)

    # -- setup steps
    def _chroot(self, *argv: str) -> str:
        return _run(["chroot", str(self.root), *argv])

    def _add_user(self) -> None:
        user = self.login_user
        self._chroot("useradd", "--create-home", "--shell", "/bin/bash", "--user-group", user)
        self._chroot("usermod", "--password", "*", user)  # not '!': sshd refuses locked accounts
        sudoers = self.root / "etc/sudoers.d/90-imagefactory"
        sudoers.write_text(f"{user} ALL=(ALL) NOPASSWD:ALL\n", encoding="utf-8")
        sudoers.chmod(0o440)
        ssh_dir = self.root / "home" / user / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        keys = ssh_dir / "authorized_keys"
        keys.write_text(self.authorized_key + "\n", encoding="utf-8")
        keys.chmod(0o600)
        self._chroot("chown", "-R", f"{user}:{user}", f"/home/{user}/.ssh")

    def _trust_host_cas(self) -> None:
        """Add this machine's CAs that the rootfs lacks (e.g. a TLS-intercepting proxy's) to its store."""
        known = set(split_pem((self.root / "etc/ssl/certs/ca-certificates.crt").read_text(errors="replace")))
        extra = []
        for bundle in host_ca_files(self.extra_ca):
            extra += [c for c in split_pem(bundle.read_text(errors="replace")) if c not in known]
        store = self.root / "usr/local/share/ca-certificates"
        store.mkdir(parents=True, exist_ok=True)
        for cert in dict.fromkeys(extra):
            name = f"imagefactory-host-{hashlib.sha256(cert.encode()).hexdigest()[:16]}.crt"
            (store / name).write_text(cert, encoding="utf-8")
        if extra:
            self._chroot("update-ca-certificates")

    def _network_files(self) -> None:
        resolv = self.root / "etc/resolv.conf"
        if resolv.is_symlink():
            resolv.unlink()
        resolv.write_text(Path("/etc/resolv.conf").read_text(errors="replace"), encoding="utf-8")
        hosts = self.root / "etc/hosts"
        lines = hosts.read_text().splitlines() if hosts.is_file() else ["127.0.0.1\tlocalhost", "::1\tlocalhost"]
        hosts.write_text("\n".join([*lines, f"127.0.1.1\t{socket.gethostname()}", ""]), encoding="utf-8")

    def _start_sshd(self) -> None:
        self.port = free_port()
        sshd = ["/usr/sbin/sshd", "-D", "-e", "-p", str(self.port), "-o", "ListenAddress=127.0.0.1",
                "-o", "PidFile=none", "-o", "UsePAM=no", "-o", "PasswordAuthentication=no",
                "-o", "KbdInteractiveAuthentication=no", "-o", "PermitRootLogin=no", "-o", "UseDNS=no",
                "-o", f"AllowUsers={self.login_user}"]
        launcher = ["unshare", "--mount", "--propagation", "private", "--", sys.executable, "-m",
                    "imagefactory.sandbox.rootfs", str(self.root), "--", *sshd]
        env = dict(CLEAN_ENV, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        log = (self.work_dir / "sshd.log").open("ab")
        self._sshd = subprocess.Popen(launcher, stdout=log, stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True)
        log.close()
        self._wait_for_sshd()

    def _wait_for_sshd(self) -> None:
        assert self._sshd is not None
        deadline = time.monotonic() + SSHD_TIMEOUT
        while time.monotonic() < deadline:
            if self._sshd.poll() is not None:
                tail = (self.work_dir / "sshd.log").read_text(errors="replace")[-800:]
                raise SandboxError(f"sshd in the rootfs exited with code {self._sshd.returncode}: {tail}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1) as s:
                s.settimeout(2)
                if s.recv(64).startswith(b"SSH-"):
                    return
            time.sleep(0.2)
        raise SandboxError(f"sshd in the rootfs did not answer on port {self.port} in {SSHD_TIMEOUT:.0f} s")

    # -- teardown
    def _quiesce(self) -> None:
        """Kill everything inside the rootfs and drop any mount under it."""
        if self.root.exists():
            kill_processes(self.root)
        if self._sshd is not None:
            with contextlib.suppress(ProcessLookupError):
                self._sshd.kill()
            self._sshd.wait(timeout=10)
            self._sshd = None
        if self.root.exists():
            unmount_all(self.root)

    def _catch_sigterm(self) -> None:
        """While running, SIGTERM exits via SystemExit so that __exit__ still cleans up."""
        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_exit)

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None


def _sigterm_to_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


# ------------------------------------------------------------- launcher inside the mount namespace

def mount_plan(root: str) -> list[list[str]]:
    """`mount` arguments, in order, that give the chroot its kernel file systems and devices."""
    return [
        ["-t", "proc", "proc", f"{root}/proc"],
        ["-t", "sysfs", "sysfs", f"{root}/sys"],
        ["--bind", "/dev", f"{root}/dev"],
        ["--bind", "/dev/pts", f"{root}/dev/pts"],
        ["-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", f"{root}/dev/shm"],
        ["-t", "tmpfs", "-o", "mode=0755,nosuid,nodev", "tmpfs", f"{root}/run"],
    ]


def _enter(argv: list[str]) -> None:
    """ROOT -- CMD...: mount (in the private namespace unshare made), chroot to ROOT, exec CMD."""
    root, command = argv[0], argv[argv.index("--") + 1:]
    for args in mount_plan(root):
        proc.run(["mount", *args])
    os.makedirs(f"{root}/run/sshd", mode=0o755, exist_ok=True)
    os.chroot(root)
    os.chdir("/")
    os.execv(command[0], command)


if __name__ == "__main__":
    _enter(sys.argv[1:])

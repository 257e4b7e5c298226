"""The per-build root: a copy of the base rootfs with sshd on a loopback port, inside its container.

`BuildRoot(...)` is a context manager. Entering it unpacks the cached base, adds the login user (sudo
NOPASSWD, the build's authorized key), trusts this machine's CAs (TLS-intercepting proxies), records
its owner (`owner.json`: this process's pid and start time, so a crashed build's leftovers are found
by `sandbox.leftovers`) and starts sshd on 127.0.0.1:`port` as the main process of a container
(`sandbox.container`), where everything Packer runs over ssh then runs. On exit, whatever the cause
(error, Ctrl-C, SIGTERM), every process of the container is ended; the tree is kept for `pack` (on
failure it is removed unless `keep_on_failure`).

With `image` (an incremental build: the parent build's image, `sandbox.images`), the tree starts from
that image instead of the base. That tree is untrusted (a repository's code ran in it as
root), so nothing of it runs on the host: the same setup (login user if missing, sudo, the build key,
this machine's CAs, the hosts entry, a new ssh host key) runs inside a one-shot container (`IMAGE_SETUP`),
as a sandbox instance's first boot does. With `trees` too (the home's tree cache, `sandbox.trees`), the
tree is not unpacked: it is an overlayfs mount on the image's cached tree (read-only lower layer), so
starting costs a mount; the mount stays after exit for `pack` and goes with `trees.unmount`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType

from imagefactory import proc
from imagefactory.errors import SandboxError
from imagefactory.files import atomic_write
from imagefactory.sandbox import container, images, trees
from imagefactory.sandbox.archive import unpack
from imagefactory.sandbox.base import ensure_base
from imagefactory.sandbox.host import (
    CLEAN_ENV,
    Progress,
    check_user,
    free_port,
    host_ca_files,
    inside,
    run_logged,
    split_pem,
)
from imagefactory.sandbox.images import Image
from imagefactory.sandbox.teardown import kill_processes, remove_tree, unmount_all
from imagefactory.waiting import WaitTimeout, wait_for

OWNER_FILE = "owner.json"
SSHD_TIMEOUT = 30.0
# The build root's only ssh host key: ed25519 is made in milliseconds, an RSA-3072 one (of `ssh-keygen -A`)
# in about a second. The clean-up removes host keys from the image; an instance makes its own at first boot.
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
# An image's setup, inside a one-shot container; values come as environment variables only.
IMAGE_SETUP = f"""set -eu
if ! id -u "$IF_USER" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash --user-group "$IF_USER"
fi
usermod --password '*' "$IF_USER"
install -d -m 0750 /etc/sudoers.d
rm -f /etc/sudoers.d/90-imagefactory
printf '%s ALL=(ALL) NOPASSWD:ALL\\n' "$IF_USER" > /etc/sudoers.d/90-imagefactory
chmod 0440 /etc/sudoers.d/90-imagefactory
home=$(getent passwd "$IF_USER" | cut -d: -f6)
install -d -m 0700 -o "$IF_USER" -g "$IF_USER" "$home/.ssh"
rm -f "$home/.ssh/authorized_keys"
printf '%s\\n' "$IF_KEY" > "$home/.ssh/authorized_keys"
chmod 0600 "$home/.ssh/authorized_keys"
chown "$IF_USER:$IF_USER" "$home/.ssh/authorized_keys"
if [ -n "$IF_CAS" ]; then
    install -d -m 0755 /usr/local/share/ca-certificates
    printf '%s' "$IF_CAS" > "/usr/local/share/ca-certificates/imagefactory-host-$IF_CAS_NAME.crt"
    update-ca-certificates >/dev/null
fi
if ! grep -q '[[:space:]]{container.HOSTNAME}$' /etc/hosts 2>/dev/null; then
    printf '127.0.1.1\\t%s\\n' {container.HOSTNAME} >> /etc/hosts
fi
rm -f /etc/ssh/ssh_host_*
ssh-keygen -q -t ed25519 -N '' -C '' -f {HOST_KEY}
"""


def sshd_argv(port: int, user: str) -> list[str]:
    """sshd in the foreground on 127.0.0.1:port for `user` only (keys only, no root, no PAM)."""
    sshd = ["/usr/sbin/sshd", "-D", "-e", "-p", str(port), "-h", HOST_KEY, "-o", "ListenAddress=127.0.0.1",
            "-o", "PidFile=none", "-o", "UsePAM=no", "-o", "PasswordAuthentication=no",
            "-o", "KbdInteractiveAuthentication=no", "-o", "PermitRootLogin=no", "-o", "UseDNS=no",
            "-o", f"AllowUsers={user}"]
    return ["/bin/sh", "-c", 'install -d -m 0755 /run/sshd && exec "$@"', "sshd", *sshd]


def sshd_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
        conn.settimeout(2)
        return conn.recv(4).startswith(b"SSH-")
    return False


def start_time(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (with the pid, it names one process for good)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def record_owner(work_dir: Path) -> None:
    atomic_write(work_dir / OWNER_FILE, json.dumps({"pid": os.getpid(), "start": start_time(os.getpid())}) + "\n")


def owner_alive(work_dir: Path) -> bool:
    """Whether the process that started the build root in work_dir still runs (no record: not alive)."""
    try:
        owner = json.loads((work_dir / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(owner, dict) and start_time(int(owner.get("pid", 0))) == owner.get("start") is not None


class BuildRoot:
    """A per-build rootfs with sshd on 127.0.0.1:`port` for Packer, as a context manager.

    `root` is the tree, `port` the ssh port, `login_user` the user to connect as. `run(argv)` runs a
    command as root inside the container; `command(argv)` gives that argv for Popen.
    """

    def __init__(self, cache_dir: Path, work_dir: Path, *, login_user: str, authorized_key: str,
                 extra_ca: Path | None = None, keep_on_failure: bool = False, progress: Progress = print,
                 image: Image | None = None, trees: Path | None = None) -> None:
        check_user(login_user)
        if "\n" in authorized_key.strip() or not authorized_key.startswith(("ssh-", "ecdsa-", "sk-")):
            raise SandboxError("the authorized key must be one public key line", "pass the .pub text")
        self.cache_dir, self.work_dir = cache_dir, work_dir
        self.login_user, self.authorized_key = login_user, authorized_key.strip()
        self.extra_ca, self.keep_on_failure, self.progress = extra_ca, keep_on_failure, progress
        self.image, self.trees = image, trees
        self.served_from_cache = False
        self.root = work_dir / "rootfs"
        self.port = 0
        self._nspawn: subprocess.Popen[bytes] | None = None
        self._init = 0
        self._old_sigterm: Callable[[int, FrameType | None], object] | int | None = None

    def __enter__(self) -> BuildRoot:
        self._catch_sigterm()
        try:
            base = None if self.image else ensure_base(self.cache_dir, progress=self.progress)
            self.work_dir.mkdir(parents=True, exist_ok=True)
            record_owner(self.work_dir)
            remove_tree(self.root)
            if self.image is not None and self.trees is not None:
                self.served_from_cache = trees.mount(self.trees, self.image, self.root)
            elif self.image is not None:
                images.unpack(self.image, self.root)
            else:
                assert base is not None
                unpack(base, self.root)
            if self.image is not None:
                self._set_up_image()
            else:
                # the tree is still the pristine base here: setting it up from the host is safe
                self._add_user()
                self._trust_host_cas()
                self._network_files()
                self._chroot("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", HOST_KEY)
            self._start_sshd()
        except BaseException:
            self._quiesce()
            self._restore_sigterm()
            trees.unmount(self.root)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self._quiesce()
            if exc_type is not None and not self.keep_on_failure:
                trees.unmount(self.root)
        finally:
            self._restore_sigterm()

    def command(self, argv: list[str], *, user: str | None = None) -> list[str]:
        """argv wrapped to run inside the build root's container (as root, or as `user`)."""
        if self._nspawn is None or not self._init:
            raise SandboxError("the build root is not running", "use it inside its with-block")
        return container.enter_argv(self._init, argv, user=user)

    def run(self, argv: list[str], *, env: dict[str, str] | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv as root inside the container; output captured, exit code returned, never raises."""
        return proc.run(self.command(argv), env=env or CLEAN_ENV, timeout=timeout, check=False)

    # -- setup steps (on the pristine base, before anything of the build has run in it)
    def _chroot(self, *argv: str) -> str:
        return run_logged(["chroot", str(self.root), *argv])

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

    def _set_up_image(self) -> None:
        """The same setup for a tree made from an (untrusted) image, inside a one-shot container."""
        assert self.image is not None
        cas = "".join(self._missing_cas(self._image_bundle()))
        name = hashlib.sha256(cas.encode()).hexdigest()[:16]
        done = container.run(self.root, ["/bin/sh", "-c", IMAGE_SETUP],
                             setenv={"IF_USER": self.login_user, "IF_KEY": self.authorized_key, "IF_CAS": cas,
                                     "IF_CAS_NAME": name}, timeout=120)
        if done.returncode != 0:
            raise SandboxError(f"setting up the build root from the image of build {self.image.build_id} failed: "
                               f"{(done.stderr or done.stdout).strip()[-400:]}", "bake it in full (without a parent)")

    def _image_bundle(self) -> str:
        """The image's CA bundle, read only if it is a regular file inside the tree (never through a link)."""
        bundle = self.root / "etc/ssl/certs/ca-certificates.crt"
        try:
            real = bundle.resolve(strict=True)
        except OSError:
            return ""
        if not inside(str(real), self.root) or not real.is_file():
            return ""
        return real.read_text(errors="replace")

    def _missing_cas(self, bundle: str) -> list[str]:
        """This machine's CAs (and extra_ca's) that `bundle` lacks."""
        known = set(split_pem(bundle))
        extra = []
        for source in host_ca_files(self.extra_ca):
            extra += [c for c in split_pem(source.read_text(errors="replace")) if c not in known]
        return list(dict.fromkeys(extra))

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
        """A hosts entry for the container's own host name (nspawn copies resolv.conf in at start)."""
        hosts = self.root / "etc/hosts"
        lines = hosts.read_text().splitlines() if hosts.is_file() else ["127.0.0.1\tlocalhost", "::1\tlocalhost"]
        hosts.write_text("\n".join([*lines, f"127.0.1.1\t{container.HOSTNAME}", ""]), encoding="utf-8")

    def _start_sshd(self) -> None:
        self.port = free_port()
        log_path = self.work_dir / "sshd.log"
        self._nspawn = container.start(self.root, sshd_argv(self.port, self.login_user), log_path)
        nspawn = self._nspawn

        def exited() -> str | None:
            if nspawn.poll() is None:
                return None
            return f"exited with code {nspawn.returncode}: {log_path.read_text(errors='replace')[-800:]}"

        try:
            wait_for(lambda: sshd_answers(self.port), timeout=SSHD_TIMEOUT, abort=exited,
                     what=f"sshd of the build root on 127.0.0.1:{self.port}")
            self._init = wait_for(lambda: container.ready_init(nspawn.pid), timeout=5, abort=exited,
                                  what="the build root's container")
        except WaitTimeout as exc:
            raise SandboxError(str(exc), f"see {log_path}") from None

    # -- teardown
    def _quiesce(self) -> None:
        """End every process of the container (and anything else inside the rootfs), drop stray mounts."""
        if self.root.exists():
            kill_processes(self.root)
        if self._nspawn is not None:
            with contextlib.suppress(ProcessLookupError):
                self._nspawn.kill()
            self._nspawn.wait(timeout=10)
            self._nspawn, self._init = None, 0
        if self.root.exists():
            unmount_all(self.root, below_only=True)  # an overlay root stays mounted for pack

    def _catch_sigterm(self) -> None:
        """While running, SIGTERM exits via SystemExit so that __exit__ still cleans up — unless the program
        already handles SIGTERM (the CLI's edge turns it into `Cancelled`, which cancels Packer first)."""
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
            self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_exit)

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None


def _sigterm_to_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)

"""What this machine offers the sandbox data plane, and the small pure helpers the other rooms share.

`sandbox_supported()` says whether the rootfs and its container can run here (Linux, root, the tools),
`run_logged` runs a host tool with a clean environment, `split_pem` / `host_ca_files` find the CAs a
build root must trust, `free_port` picks a loopback port.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from imagefactory import proc
from imagefactory.errors import SandboxError

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
REQUIRED_TOOLS = ("debootstrap", "systemd-nspawn", "nsenter", "chroot", "umount", "tar", "zstd")
PACKAGES_HINT = "apt-get install debootstrap systemd-container zstd util-linux"
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
PEM_RE = re.compile(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")

Progress = Callable[[str], None]


def run_logged(argv: list[str], *, log: Path | None = None) -> str:
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
        return False, "the sandbox rootfs needs root (debootstrap, systemd-nspawn); run the bake as root"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool, path=CLEAN_ENV["PATH"]) is None]
    if missing:
        return False, f"missing {', '.join(missing)}; {PACKAGES_HINT}"
    return True, f"Linux, root, debootstrap at {shutil.which('debootstrap', path=CLEAN_ENV['PATH'])}"


def check_user(user: str, field: str = "image.login_user") -> str:
    if not USER_RE.fullmatch(user):
        raise SandboxError(f"login user {user!r} is not a valid user name", f"fix {field} in the recipe")
    return user


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
        return int(sock.getsockname()[1])


def inside(path: str, root: Path) -> bool:
    base = str(root.resolve())
    return path == base or path.startswith(base + "/")

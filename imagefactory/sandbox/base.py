"""The Debian base rootfs, made once per machine with debootstrap and cached.

`ensure_base(cache_dir)` returns `debian-bookworm-base-v1.tar.zst`, making it on first use under the
one file lock (`imagefactory.files.locked`) in a temp dir renamed into place, so two bakes never race
and a half-made base is never used.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from imagefactory.files import locked
from imagefactory.sandbox.archive import pack
from imagefactory.sandbox.host import Progress, run_logged
from imagefactory.sandbox.teardown import remove_tree

SUITE = "bookworm"
SANDBOX_PYTHON = "3.11"  # bookworm's python3: the only CPython a sandbox build root has
BASE_PACKAGES = ("openssh-server", "sudo", "ca-certificates", "git", "python3", "python3-venv",
                 "python3-pip", "curl", "procps", "systemd")
BASE_FILE = f"debian-{SUITE}-base-v1.tar.zst"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "IMAGEFACTORY_DEBIAN_MIRROR"


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


def ensure_base(cache_dir: Path, *, progress: Progress = print, mirror: str | None = None) -> Path:
    """The cached base rootfs tarball, made with debootstrap on first use (about a minute)."""
    target = cache_dir / BASE_FILE
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with locked(target, what="the sandbox base rootfs"):
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
            run_logged(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE,
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

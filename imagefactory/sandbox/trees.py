"""Unpacked copies of packed build images: an incremental build root starts from one without unpacking.

A sandbox build's image is a packed rootfs (`archive.image_path`); unpacking one (zstd | tar, hundreds
of MB) was most of what starting an incremental build root cost. So a build's tree is kept in the home's
tree cache, `<trees>/<build id>/rootfs`, beside `stamp.json`, the sha256 of the archive it is the content
of. A full build's tree is moved there once packed (`keep`, a rename); an image whose tree is missing or
stale is unpacked there on first use. An incremental build root is then an overlayfs mount (`mount`):
the cached tree is its only, read-only, lower layer and the upper layer is in the build's directory
(`layers_dir`). So a build never modifies a cached tree, and only the kernel reads it (it is untrusted:
a repository's code ran in it as root; nothing of it runs on the host).

A tree is served only while its stamp matches the archive's digest (a re-packed or replaced archive is
unpacked afresh). At most `KEEP` trees are kept: the least recently used go first, never one that a
mounted build root uses. The cache's lock is held while a tree is chosen, unpacked, mounted or removed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from imagefactory import proc
from imagefactory.errors import SandboxError
from imagefactory.files import atomic_write, locked
from imagefactory.home import Home
from imagefactory.sandbox.archive import unpack
from imagefactory.sandbox.teardown import remove_tree

KEEP = 2
STAMP = "stamp.json"
ARCHIVE_SUFFIX = ".tar.zst"


def cache_dir(home: Home) -> Path:
    """The home's tree cache (beside the packed images it mirrors)."""
    return home.sandbox_dir / "trees"


def layers_dir(root: Path) -> Path:
    """Where an overlay build root at `root` keeps its upper layer (and overlayfs's work dir)."""
    return root.with_name(root.name + ".layers")


def digest(archive: Path) -> str:
    sha = hashlib.sha256()
    with archive.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def _entry(trees: Path, archive: Path) -> Path:
    return trees / archive.name.removesuffix(ARCHIVE_SUFFIX)


def _stamp(entry: Path) -> str | None:
    try:
        value = json.loads((entry / STAMP).read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _write_stamp(entry: Path, sha: str) -> None:
    atomic_write(entry / STAMP, json.dumps({"sha256": sha}) + "\n")


def keep(trees: Path, archive: Path, tree: Path) -> Path | None:
    """Move `tree`, just packed into `archive` (nothing mounted or running in it), into the cache; where it
    cannot be moved (another file system), it is removed and None returned (that image unpacks on first use)."""
    sha = digest(archive)
    with locked(trees, what="the sandbox tree cache"):
        entry = _entry(trees, archive)
        remove_tree(entry)
        entry.mkdir(parents=True)
        try:
            os.rename(tree, entry / "rootfs")
        except OSError:
            remove_tree(entry)
            remove_tree(tree)
            return None
        _write_stamp(entry, sha)
        _evict(trees, keep_entry=entry)
    return entry / "rootfs"


def mount(trees: Path, archive: Path, root: Path) -> bool:
    """Mount at `root` an overlay of the cached tree of `archive` (unpacked into the cache first if it is
    missing or stale) with a fresh upper layer in `layers_dir(root)`; True if the cached tree was served."""
    sha = digest(archive)
    layers = layers_dir(root)
    remove_tree(layers)
    (layers / "upper").mkdir(parents=True)
    (layers / "work").mkdir()
    root.mkdir(parents=True, exist_ok=True)
    with locked(trees, what="the sandbox tree cache"):
        entry = _entry(trees, archive)
        tree = entry / "rootfs"
        served = _stamp(entry) == sha and tree.is_dir()
        if not served and in_use(tree):
            raise SandboxError(f"the cached tree of {archive} is stale but a running build root uses it",
                               "bake again once that build has ended")
        if not served:
            remove_tree(entry)
            entry.mkdir(parents=True)
            unpack(archive, entry / "rootfs.part")
            os.rename(entry / "rootfs.part", tree)
            _write_stamp(entry, sha)
        os.utime(entry / STAMP)  # most recently used
        _mount_overlay(tree, layers, root)
        _evict(trees, keep_entry=entry)
    return served


def _mount_overlay(tree: Path, layers: Path, root: Path) -> None:
    """`volatile` (Linux 5.10+): no syncs of the upper file system, nor its unmount's (about 0.6 s after
    packing an image); the upper layer is thrown away after packing, never mounted again. An older kernel
    refuses the option: mounted without it. No overlayfs at all: one line saying so."""
    options = f"lowerdir={tree},upperdir={layers / 'upper'},workdir={layers / 'work'}"
    try:
        proc.run(["mount", "-t", "overlay", "overlay", "-o", options + ",volatile", str(root)], timeout=60)
    except proc.CommandError:
        try:
            proc.run(["mount", "-t", "overlay", "overlay", "-o", options, str(root)], timeout=60)
        except proc.CommandError as exc:
            raise SandboxError(f"cannot mount the incremental build root (an overlayfs on {tree}): {exc.message}",
                               "the sandbox's incremental bakes need overlayfs (modprobe overlay, as root); "
                               "or rebuild in full: invoke rebuild --full") from None


def unmount(root: Path) -> None:
    """Drop an overlay build root: its mount (and what is mounted under it), the directory, its layers."""
    remove_tree(root)
    remove_tree(layers_dir(root))


def in_use(tree: Path) -> bool:
    """Whether a mounted overlay has `tree` as a lower layer."""
    needle = f"lowerdir={tree.resolve()}"
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            _, _, after = line.partition(" - ")
            fields = after.split()
            if len(fields) >= 3 and fields[0] == "overlay":
                lowers = [o for o in fields[2].split(",") if o.startswith("lowerdir=")]
                if any(o == needle or o.startswith(needle + ":") for o in lowers):
                    return True
    return False


def _evict(trees: Path, *, keep_entry: Path) -> None:
    """Keep the KEEP most recently used trees (and `keep_entry`); never remove one in use."""
    entries = sorted((e for e in trees.iterdir() if e.is_dir() and e != keep_entry),
                     key=lambda e: _used_at(e), reverse=True)
    for entry in entries[KEEP - 1:]:
        if not in_use(entry / "rootfs"):
            remove_tree(entry)


def _used_at(entry: Path) -> float:
    try:
        return (entry / STAMP).stat().st_mtime
    except OSError:
        return 0.0

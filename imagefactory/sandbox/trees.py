"""Unpacked copies of build images: an incremental build root starts from one without unpacking.

A sandbox build's image is packed (`sandbox.images`: a whole rootfs, or a layer over its parent's);
unpacking one (zstd | tar, hundreds of MB) was most of what starting an incremental build root cost. So a
build's tree is kept in the home's tree cache, `<trees>/<build id>/rootfs`, beside `stamp.json`, the
identity of the packed files it is the content of (`Image.identity`). A full build's tree is moved there
once packed (`keep`, a rename); an image whose tree is missing or stale is unpacked there on first use.
An incremental build root is then an overlayfs mount (`mount`): the cached tree is its only, read-only,
lower layer and the upper layer is in the build's directory (`layers_dir`), which is what the build's
own image packs (`images.pack_layer`). So a build never modifies a cached tree, and only the kernel reads
it (it is untrusted: a repository's code ran in it as root; nothing of it runs on the host).

A tree is served only while its stamp matches its image's packed files (a re-packed or replaced archive
is unpacked afresh). At most `KEEP` trees are kept: the least recently used go first, never one that a
mounted build root uses. The cache's lock is held while a tree is chosen, unpacked, mounted or removed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from imagefactory import proc
from imagefactory.errors import SandboxError
from imagefactory.files import atomic_write, locked
from imagefactory.home import Home
from imagefactory.sandbox import images
from imagefactory.sandbox.images import Image
from imagefactory.sandbox.teardown import remove_tree

KEEP = 2
STAMP = "stamp.json"
# An upper layer that says everything in itself: a renamed lower directory is copied up whole (no
# redirect), a changed owner or mode copies the file (no metadata-only copy), no index of hard links.
LAYER_OPTIONS = "redirect_dir=off,index=off,metacopy=off"


def cache_dir(home: Home) -> Path:
    """The home's tree cache (beside the packed images it mirrors)."""
    return home.sandbox_dir / "trees"


def layers_dir(root: Path) -> Path:
    """Where an overlay build root at `root` keeps its upper layer (and overlayfs's work dir)."""
    return root.with_name(root.name + ".layers")


def upper_dir(root: Path) -> Path:
    """The upper layer of the overlay build root at `root`: what the build changed."""
    return layers_dir(root) / "upper"


def tree_of(trees: Path, image: Image) -> Path:
    """Where the cache keeps `image`'s tree (an overlay build root on it has it as its lower layer)."""
    return trees / image.build_id / "rootfs"


def _stamp(entry: Path) -> str | None:
    try:
        value = json.loads((entry / STAMP).read_text(encoding="utf-8")).get("packed")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _write_stamp(entry: Path, identity: str) -> None:
    atomic_write(entry / STAMP, json.dumps({"packed": identity}) + "\n")


def keep(trees: Path, image: Image, tree: Path) -> Path | None:
    """Move `tree`, just packed as `image` (nothing mounted or running in it), into the cache; where it
    cannot be moved (another file system), it is removed and None returned (that image unpacks on first use)."""
    identity = image.identity()
    with locked(trees, what="the sandbox tree cache"):
        entry = tree_of(trees, image).parent
        remove_tree(entry)
        entry.mkdir(parents=True)
        try:
            os.rename(tree, entry / "rootfs")
        except OSError:
            remove_tree(entry)
            remove_tree(tree)
            return None
        _write_stamp(entry, identity)
        _evict(trees, keep_entry=entry)
    return entry / "rootfs"


def mount(trees: Path, image: Image, root: Path) -> bool:
    """Mount at `root` an overlay of the cached tree of `image` (unpacked into the cache first if it is
    missing or stale) with a fresh upper layer in `layers_dir(root)`; True if the cached tree was served."""
    identity = image.identity()
    layers = layers_dir(root)
    remove_tree(layers)
    (layers / "upper").mkdir(parents=True)
    (layers / "work").mkdir()
    root.mkdir(parents=True, exist_ok=True)
    with locked(trees, what="the sandbox tree cache"):
        tree = tree_of(trees, image)
        entry = tree.parent
        served = _stamp(entry) == identity and tree.is_dir()
        if not served and in_use(tree):
            raise SandboxError(f"the cached tree of build {image.build_id} is stale but a running build root uses it",
                               "bake again once that build has ended")
        if not served:
            remove_tree(entry)
            entry.mkdir(parents=True)
            images.unpack(image, entry / "rootfs.part")
            os.rename(entry / "rootfs.part", tree)
            _write_stamp(entry, identity)
        os.utime(entry / STAMP)  # most recently used
        _mount_overlay(tree, layers, root)
        _evict(trees, keep_entry=entry)
    return served


def _mount_overlay(tree: Path, layers: Path, root: Path) -> None:
    """With LAYER_OPTIONS and `volatile` (Linux 5.10+): no syncs of the upper file system, nor its
    unmount's (about 0.6 s after packing an image); the upper layer is packed once unmounted, never mounted
    again. An older kernel refuses `volatile`: mounted without it (and one older than 4.19, without
    LAYER_OPTIONS, features it does not have). No overlayfs at all: one line saying so."""
    options = f"lowerdir={tree},upperdir={layers / 'upper'},workdir={layers / 'work'}"
    tries = [f"{options},{LAYER_OPTIONS},volatile", f"{options},{LAYER_OPTIONS}", options]
    failure = ""
    for attempt in tries:
        try:
            proc.run(["mount", "-t", "overlay", "overlay", "-o", attempt, str(root)], timeout=60)
            return
        except proc.CommandError as exc:
            failure = exc.message
    raise SandboxError(f"cannot mount the incremental build root (an overlayfs on {tree}): {failure}",
                       "the sandbox's incremental bakes need overlayfs (modprobe overlay, as root); "
                       "or rebuild in full: invoke rebuild --full")


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

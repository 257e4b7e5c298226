"""Unpacked copies of build images: an incremental build root starts from one without unpacking.

A sandbox build's image is packed (`sandbox.images`: a whole rootfs, or a layer over its parent's);
unpacking one (zstd | tar, hundreds of MB) was most of what starting an incremental build root cost. So
the home's tree cache keeps, per build, `<trees>/<build id>/` with either

    rootfs/     the image's whole tree: a full build's, moved here once packed (`keep`, a rename), or an
                image unpacked here on first use (its layers laid out)
    layer/      an incremental build's overlay upper layer, moved here once packed (`pack_layer`): the
                tree of that image is this layer over its parent's cached tree (overlayfs's whiteouts
                and opaque directories are kept as such)

beside `stamp.json`: the identity of the packed files it is the content of (`Image.identity`) and the
build it lies over. An incremental build root is an overlayfs mount (`mount`) whose read-only lower
layers are the image's stack of cached entries (its layer, its parent's, ... down to a whole rootfs) and
whose upper layer is in the build's directory (`layers_dir`); so a chain of incremental builds never
unpacks a whole tree again, a build never modifies a cached tree, and only the kernel reads one (it is
untrusted: a repository's code ran in it as root; nothing of it runs on the host).

An entry is served only while its stamp matches its image's packed files (a re-packed or replaced archive
is unpacked afresh). At most `KEEP` whole trees and `KEEP_LAYERS` layers are kept: the least recently used
go first (a stack is used as one), never one that a mounted overlay uses, and a layer goes with the tree
it lies over. The cache's lock is held while an entry is chosen, unpacked, mounted, kept or removed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imagefactory import proc
from imagefactory.errors import SandboxError
from imagefactory.files import atomic_write, locked
from imagefactory.home import Home
from imagefactory.sandbox import images
from imagefactory.sandbox.archive import PackInfo
from imagefactory.sandbox.images import Image
from imagefactory.sandbox.teardown import remove_tree, unmount_all

KEEP = 2
KEEP_LAYERS = 8
STAMP = "stamp.json"
ROOTFS, LAYER = "rootfs", "layer"
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


def _stamp(entry: Path) -> dict[str, object]:
    try:
        value = json.loads((entry / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_stamp(entry: Path, image: Image) -> None:
    atomic_write(entry / STAMP, json.dumps({"packed": image.identity(), "over": image.layers[-1].parent}) + "\n")


def _stack(trees: Path, image: Image) -> list[Path] | None:
    """The cached entries `image`'s tree is made of, topmost first (layers, then a whole rootfs), each
    matching its packed files; None when one is missing or stale."""
    stack: list[Path] = []
    for depth in range(len(image.layers), 0, -1):
        prefix = Image(image.layers[depth - 1].build_id, image.layers[:depth])
        entry = trees / prefix.build_id
        if _stamp(entry).get("packed") != prefix.identity():
            return None
        if (entry / ROOTFS).is_dir():
            return [*stack, entry / ROOTFS]
        if not (entry / LAYER).is_dir() or depth == 1:
            return None
        stack.append(entry / LAYER)
    return None


def keep(trees: Path, image: Image, tree: Path) -> Path | None:
    """Move `tree`, just packed as `image` (nothing mounted or running in it), into the cache; where it
    cannot be moved (another file system), it is removed and None returned (that image unpacks on first use)."""
    with locked(trees, what="the sandbox tree cache"):
        entry = trees / image.build_id
        remove_tree(entry)
        entry.mkdir(parents=True)
        try:
            os.rename(tree, entry / ROOTFS)
        except OSError:
            remove_tree(entry)
            remove_tree(tree)
            return None
        _write_stamp(entry, image)
        _evict(trees, keep={entry})
    return entry / ROOTFS


def mount(trees: Path, image: Image, root: Path) -> bool:
    """Mount at `root` an overlay of the cached tree of `image` (its stack of cached entries; unpacked into
    the cache first if one is missing or stale) with a fresh upper layer in `layers_dir(root)`; True if the
    cached tree was served."""
    layers = layers_dir(root)
    remove_tree(layers)
    (layers / "upper").mkdir(parents=True)
    (layers / "work").mkdir()
    root.mkdir(parents=True, exist_ok=True)
    with locked(trees, what="the sandbox tree cache"):
        stack = _stack(trees, image)
        served = stack is not None
        if stack is None:
            entry = trees / image.build_id
            if in_use(entry / ROOTFS) or in_use(entry / LAYER):
                raise SandboxError(f"the cached tree of build {image.build_id} is stale but a running build root "
                                   "uses it", "bake again once that build has ended")
            remove_tree(entry)
            entry.mkdir(parents=True)
            images.unpack(image, entry / "rootfs.part")
            os.rename(entry / "rootfs.part", entry / ROOTFS)
            _write_stamp(entry, image)
            stack = [entry / ROOTFS]
        for part in stack:
            os.utime(part.parent / STAMP)  # most recently used, the whole stack
        _mount_overlay(stack, layers, root)
        _evict(trees, keep={p.parent for p in stack})
    return served


def pack_layer(trees: Path, parent: Image, root: Path, folder: Path, build_id: str) -> PackInfo:
    """Pack the overlay build root at `root` (mounted by `mount` on `parent`'s cached tree) as build_id's
    image, a layer over `parent`'s (`images.pack_layer`); then keep its upper layer as that image's entry
    (over the parent's) and drop the build root."""
    with locked(trees, what="the sandbox tree cache"):
        stack = _stack(trees, parent)
        if stack is None:
            raise SandboxError(f"the cached tree of build {parent.build_id} changed while a build root used it",
                               "bake again")
        unmount_all(root)
        with _view(stack, layers_dir(root) / "parent") as lower:
            info = images.pack_layer(upper_dir(root), lower, folder, build_id, parent.build_id)
        image = images.load(folder, build_id)
        entry = trees / build_id
        remove_tree(entry)
        entry.mkdir(parents=True)
        try:
            os.rename(upper_dir(root), entry / LAYER)
        except OSError:
            remove_tree(entry)
        else:
            _write_stamp(entry, image)
            _evict(trees, keep={entry, *(p.parent for p in stack)})
    unmount(root)
    return info


@contextmanager
def _view(stack: list[Path], where: Path) -> Iterator[Path]:
    """The tree `stack` makes, to read: the whole rootfs itself, or a read-only overlay of the stack."""
    if len(stack) == 1:
        yield stack[0]
        return
    where.mkdir(parents=True, exist_ok=True)
    proc.run(["mount", "-t", "overlay", "overlay", "-o", f"ro,lowerdir={_lowers(stack)}", str(where)], timeout=60)
    try:
        yield where
    finally:
        unmount_all(where)


def _lowers(stack: list[Path]) -> str:
    for part in stack:
        if any(c in str(part) for c in ":,"):
            raise SandboxError(f"the sandbox tree cache's path {part} holds ':' or ',' (overlayfs cannot name it)",
                               "use a factory home whose path has neither")
    return ":".join(str(p) for p in stack)


def _mount_overlay(stack: list[Path], layers: Path, root: Path) -> None:
    """With LAYER_OPTIONS and `volatile` (Linux 5.10+): no syncs of the upper file system, nor its
    unmount's (about 0.6 s after packing an image); the upper layer is packed once unmounted, never mounted
    as an upper again. An older kernel refuses `volatile`: mounted without it (and one older than 4.19,
    without LAYER_OPTIONS, features it does not have). No overlayfs at all: one line saying so."""
    options = f"lowerdir={_lowers(stack)},upperdir={layers / 'upper'},workdir={layers / 'work'}"
    failure = ""
    for attempt in (f"{options},{LAYER_OPTIONS},volatile", f"{options},{LAYER_OPTIONS}", options):
        try:
            proc.run(["mount", "-t", "overlay", "overlay", "-o", attempt, str(root)], timeout=60)
            return
        except proc.CommandError as exc:
            failure = exc.message
    raise SandboxError(f"cannot mount the incremental build root (an overlayfs on {stack[0]}): {failure}",
                       "the sandbox's incremental bakes need overlayfs (modprobe overlay, as root); "
                       "or rebuild in full: invoke rebuild --full")


def unmount(root: Path) -> None:
    """Drop an overlay build root: its mount (and what is mounted under it), the directory, its layers."""
    remove_tree(root)
    remove_tree(layers_dir(root))


def in_use(tree: Path) -> bool:
    """Whether a mounted overlay has `tree` as one of its lower layers."""
    wanted = str(tree.resolve()) if tree.exists() else str(tree)
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            _, _, after = line.partition(" - ")
            fields = after.split()
            if len(fields) >= 3 and fields[0] == "overlay":
                lowers = [o.removeprefix("lowerdir=") for o in fields[2].split(",") if o.startswith("lowerdir=")]
                if any(wanted in value.split(":") for value in lowers):
                    return True
    return False


def _evict(trees: Path, *, keep: set[Path]) -> None:
    """Keep the KEEP most recently used whole trees and KEEP_LAYERS layers (and those in `keep`); never
    remove one in use; a layer whose tree below is gone goes too."""
    entries = sorted((e for e in trees.iterdir() if e.is_dir()), key=_used_at, reverse=True)
    wholes = [e for e in entries if not (e / LAYER).is_dir()]
    layers = [e for e in entries if (e / LAYER).is_dir()]
    for group, limit in ((wholes, KEEP), (layers, KEEP_LAYERS)):
        kept = 0
        for entry in group:
            if entry in keep or in_use(entry / ROOTFS) or in_use(entry / LAYER):
                continue
            kept += 1
            if kept > limit - len(keep & set(group)):
                remove_tree(entry)
    for entry in layers:  # a layer over a tree no longer kept is of no use
        if entry.exists() and not _grounded(trees, entry) and not in_use(entry / LAYER):
            remove_tree(entry)


def _grounded(trees: Path, entry: Path) -> bool:
    """Whether the layer entry lies, through the layers below it, on a whole tree that is still kept."""
    for _ in range(images.MAX_DEPTH):
        if (entry / ROOTFS).is_dir():
            return True
        over = _stamp(entry).get("over")
        if not (entry / LAYER).is_dir() or not isinstance(over, str):
            return False
        entry = trees / over
    return False


def _used_at(entry: Path) -> float:
    try:
        return (entry / STAMP).stat().st_mtime
    except OSError:
        return 0.0

"""A sandbox build's image, what its AMIs hold: a whole root filesystem, or a layer over its parent's image.

A full build's image is its whole provisioned rootfs, packed (`archive.pack`) as `<images>/<id>.tar.zst`.
An incremental build's image stores only what the build changed, the way the EBS snapshot of a volume
made from another snapshot stores only the changed blocks: `<id>.tar.zst` holds the files and directories
it added or changed (the overlay build root's upper layer, `pack_layer`), and `<id>.layer.json` names the
parent build and lists what the build removed:

    {"layer_version": 1, "parent": "<build id>", "removed": ["etc/ssh/ssh_host_ed25519_key", ...],
     "replaced": ["home/ubuntu/hello-binder", ...]}

`removed` are paths deleted from the parent's tree (overlayfs whiteouts), `replaced` directories whose
parent content is hidden whole (opaque directories: removed, then made again). The layer file is written
before the archive, so an archive without one is a whole rootfs, never a layer read as one. A layer's
parent images stay as long as it does (the sandbox removes no packed image).

`load` follows the chain down to a whole image; `unpack` lays the chain out into a plain tree, the
oldest first: each layer's removals, then its files. The trees are untrusted (a repository's code ran in
them as root): a removal walks the tree without following any link, and one that does not lead to a
directory names the damaged image.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imagefactory.errors import SandboxError
from imagefactory.files import atomic_write
from imagefactory.sandbox import archive

SUFFIX = ".tar.zst"
LAYER_SUFFIX = ".layer.json"
LAYER_VERSION = 1
MAX_DEPTH = 64  # far beyond any rebuild.max_chain; a loop of parents is a damaged image
OPAQUE_XATTR = "trusted.overlay.opaque"


@dataclass(frozen=True)
class Layer:
    """One packed archive of an image: a whole rootfs (`parent` None), or a layer over build `parent`."""

    build_id: str
    archive: Path
    parent: str | None = None
    removed: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()


@dataclass(frozen=True)
class Image:
    """A build's image as the layers that make it up, the whole rootfs first, the build's own last."""

    build_id: str
    layers: tuple[Layer, ...]

    @property
    def archive(self) -> Path:
        return self.layers[-1].archive

    def identity(self) -> str:
        """What names this content for a cache: every layer's archive and layer file, by inode, size and
        change time (packs are written once and renamed into place: a new pack is a new inode)."""
        parts = []
        for layer in self.layers:
            for path in (layer.archive, layer_file(layer.archive)):
                try:
                    st = path.stat()
                except FileNotFoundError:
                    parts.append(f"{path.name}:-")
                    continue
                parts.append(f"{path.name}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
        return " ".join(parts)


def archive_path(images: Path, build_id: str) -> Path:
    return images / f"{build_id}{SUFFIX}"


def layer_file(archive_file: Path) -> Path:
    return archive_file.with_name(archive_file.name.removesuffix(SUFFIX) + LAYER_SUFFIX)


def _read_layer(images: Path, build_id: str) -> Layer:
    path = archive_path(images, build_id)
    meta = layer_file(path)
    try:
        raw = meta.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Layer(build_id, path)
    except OSError as exc:
        raise SandboxError(f"cannot read {meta}: {exc.strerror}", "check the sandbox home's permissions") from None
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    ok = (isinstance(data, dict) and data.get("layer_version") == LAYER_VERSION
          and isinstance(data.get("parent"), str) and data["parent"]
          and all(isinstance(data.get(k), list) and all(isinstance(p, str) and _relative(p) for p in data[k])
                  for k in ("removed", "replaced")))
    if not ok:
        raise SandboxError(f"{meta} is damaged (not a layer_version {LAYER_VERSION} layer file)",
                           "bake the image again (a full bake: --full)")
    return Layer(build_id, path, data["parent"], tuple(data["removed"]), tuple(data["replaced"]))


def _relative(path: str) -> bool:
    parts = path.split("/")
    return bool(path) and all(p not in ("", ".", "..") for p in parts)


class Missing(SandboxError):
    """An image, or one of the images it is a layer over, has no packed archive (any more)."""


def load(images: Path, build_id: str) -> Image:
    """Build `build_id`'s image, its chain of layers followed down to a whole rootfs; `Missing` names the
    archive that is not there (the build's own, or that of a build it is a layer over)."""
    layers: list[Layer] = []
    current: str | None = build_id
    while current is not None:
        if len(layers) >= MAX_DEPTH or any(layer.build_id == current for layer in layers):
            raise SandboxError(f"the image of build {build_id} is damaged: its layers' parents loop or go on "
                               f"past {MAX_DEPTH}", "bake the image again (a full bake: --full)")
        layer = _read_layer(images, current)
        if not layer.archive.is_file():
            over = "" if current == build_id else f", the image build {build_id}'s layer is over,"
            raise Missing(f"build {build_id} has no packed root filesystem: {layer.archive}{over} is not there",
                          "bake the image again in the sandbox; only provisioned sandbox builds can launch")
        layers.append(layer)
        current = layer.parent
    return Image(build_id, tuple(reversed(layers)))


def whole(archive_file: Path) -> Image:
    """An image that is one packed whole rootfs (no layer file is read)."""
    build_id = archive_file.name.removesuffix(SUFFIX)
    return Image(build_id, (Layer(build_id, archive_file),))


# ------------------------------------------------------------------------------------------ reading
def unpack(image: Image, dest: Path) -> None:
    """Lay the image out at `dest` as one plain tree: the whole rootfs, then each layer's removals and files."""
    for layer in image.layers:
        if layer.parent is not None:
            with _opened(dest) as fd:
                for rel in layer.removed:
                    _remove(fd, rel, image)
                for rel in layer.replaced:
                    _clear(fd, rel, image)
        archive.unpack(layer.archive, dest)


@contextmanager
def _opened(dest: Path) -> Iterator[int]:
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def _dir_fd(root_fd: int, rel: str, image: Image | None, *, walk_all: bool = False) -> int | None:
    """A descriptor of rel's parent directory (of rel itself with `walk_all`), walked without following
    links; None when it is not there."""
    parts = rel.split("/") if walk_all else rel.split("/")[:-1]
    fd = os.dup(root_fd)
    for part in parts:
        try:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        except FileNotFoundError:
            os.close(fd)
            return None
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                name = image.build_id if image is not None else "?"
                raise SandboxError(f"the image of build {name} is damaged: a layer removes {rel!r}, "
                                   f"but {part!r} on its way is not a directory", "bake the image again") from None
            raise
        os.close(fd)
        fd = nxt
    return fd


def _remove(root_fd: int, rel: str, image: Image) -> None:
    fd = _dir_fd(root_fd, rel, image)
    if fd is None:
        return
    name = rel.rsplit("/", 1)[-1]
    try:
        st = os.lstat(name, dir_fd=fd)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


def _clear(root_fd: int, rel: str, image: Image) -> None:
    """Empty directory rel (an opaque directory of a layer: its parent content is hidden whole; where the
    parent had something else there, `removed` lists it and it is gone by now)."""
    fd = _dir_fd(root_fd, rel, image, walk_all=True)
    if fd is None:
        return
    try:
        for name in os.listdir(fd):
            _remove(fd, name, image)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------ writing
def pack_whole(root: Path, images: Path, build_id: str) -> archive.PackInfo:
    """Pack the whole tree at `root` as build_id's image."""
    return archive.pack(root, archive_path(images, build_id))


def pack_layer(upper: Path, lower: Path, images: Path, build_id: str, parent: str) -> archive.PackInfo:
    """Pack an overlay's upper layer (unmounted) over the tree `lower` (the parent's image, laid out) as
    build_id's image, a layer over build `parent`. The upper's whiteouts become `removed`, its opaque
    directories `replaced`, and so does any path where a directory took the place of something else or
    the other way round (tar cannot put one over the other); everything else goes in the archive, without
    overlayfs's own attributes. Neither tree's links are followed."""
    members, removed, replaced, size = _scan_upper(upper)
    with _opened(lower) as lower_fd:
        for rel, is_dir in members:
            below = _kind(lower_fd, rel)
            if below is not None and below != is_dir:
                removed.append(rel)
    dest = archive_path(images, build_id)
    dest.parent.mkdir(parents=True, exist_ok=True)
    meta = layer_file(dest)
    atomic_write(meta, json.dumps({"layer_version": LAYER_VERSION, "parent": parent, "removed": removed,
                                   "replaced": replaced}, indent=1) + "\n")
    try:
        packed = archive.pack_members(upper, [rel for rel, _ in members], dest, xattrs_exclude="trusted.overlay.*")
    except BaseException:
        meta.unlink(missing_ok=True)
        raise
    return archive.PackInfo(dest, packed, size)


def _kind(root_fd: int, rel: str) -> bool | None:
    """Whether rel under root_fd is a directory (True), something else (False) or absent (None): None also
    where a step on the way is not a directory (then it is not there in that tree either)."""
    try:
        fd = _dir_fd(root_fd, rel, None)
    except SandboxError:
        return None
    if fd is None:
        return None
    try:
        return stat.S_ISDIR(os.lstat(rel.rsplit("/", 1)[-1], dir_fd=fd).st_mode)
    except FileNotFoundError:
        return None
    finally:
        os.close(fd)


def _scan_upper(upper: Path) -> tuple[list[tuple[str, bool]], list[str], list[str], int]:
    """([(member, is a directory)], removed, replaced, apparent bytes) of an overlay upper layer, walked
    without following links; members come directories before what they hold."""
    members: list[tuple[str, bool]] = []
    removed: list[str] = []
    replaced: list[str] = []
    size = 0
    for top, dirs, files in os.walk(upper):
        rel_top = os.path.relpath(top, upper)
        prefix = "" if rel_top == "." else rel_top + "/"
        for name in [*dirs, *files]:
            path = os.path.join(top, name)
            st = os.lstat(path)
            rel = prefix + name
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                removed.append(rel)
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if is_dir and _opaque(path):
                replaced.append(rel)
            members.append((rel, is_dir))
            size += 0 if is_dir else st.st_size
    return members, removed, replaced, size


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False

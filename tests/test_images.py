"""Layered sandbox images (sandbox/images.py): an incremental build's image is the overlay's upper layer,
packed over its parent's image, and laid out again it is exactly the tree the build saw. Real overlayfs
mounts, real tar and zstd, small trees (so fast)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from imagefactory.errors import SandboxError
from imagefactory.sandbox import images, trees
from imagefactory.sandbox.teardown import mounts_under

ODD = os.fsdecode(b"caf\xe9-latin1")  # a name that is not UTF-8


def snapshot(tree: Path) -> dict[str, tuple[object, ...]]:
    """Every entry's type and mode, owner, size, content or link target, and extended attributes
    (directories' times change as their entries are removed and made again: not compared)."""
    seen: dict[str, tuple[object, ...]] = {}
    for top, dirs, files in os.walk(tree):
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if os.path.islink(path):
                body: object = os.readlink(path)
            elif os.path.isfile(path):
                body = (Path(path).read_bytes(), st.st_mtime_ns)
            else:
                body = None
            xattrs = sorted(os.listxattr(path, follow_symlinks=False))
            seen[os.path.relpath(path, tree)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, body, xattrs)
    return seen


def members(archive: Path) -> set[str]:
    listed = subprocess.run(f"zstd -dqc {archive} | tar -t --quoting-style=literal", shell=True,
                            capture_output=True, check=True)
    return {os.fsdecode(n).removeprefix("./").rstrip("/") for n in listed.stdout.split(b"\n") if n not in (b"", b"./")}


def parent_tree(root: Path) -> None:
    """A small rootfs-like tree with one of each thing a build can change."""
    for folder in ("etc/gone-dir/sub", "etc/replaced", "etc/dir-to-file", "home/u/code", "usr/bin"):
        (root / folder).mkdir(parents=True)
    for name, text in {"etc/keep": "kept", "etc/changed": "old", "etc/gone": "bye", "etc/gone-dir/sub/f": "f",
                       "etc/replaced/old-1": "1", "etc/replaced/old-2": "2", "etc/file-to-dir": "file",
                       "etc/dir-to-file/inside": "i", "home/u/code/hello.py": "print(1)\n",
                       "usr/bin/tool": "#!/bin/sh\n", "usr/bin/mode": "m"}.items():
        (root / name).write_text(text)
    (root / "etc/link").symlink_to("/etc/keep")
    (root / "usr/bin/tool").chmod(0o755)


def change_everything(root: Path) -> None:
    """What a build does to its root: every kind of change overlayfs records in the upper layer."""
    (root / "etc/changed").write_text("new and longer")
    (root / "etc/new").write_text("new")
    (root / "etc/gone").unlink()
    subprocess.run(["rm", "-rf", str(root / "etc/gone-dir")], check=True)
    subprocess.run(["rm", "-rf", str(root / "etc/replaced")], check=True)
    (root / "etc/replaced").mkdir()  # removed and made again: an opaque directory
    (root / "etc/replaced/fresh").write_text("fresh")
    (root / "etc/file-to-dir").unlink()
    (root / "etc/file-to-dir").mkdir()
    (root / "etc/file-to-dir/x").write_text("x")
    subprocess.run(["rm", "-rf", str(root / "etc/dir-to-file")], check=True)
    (root / "etc/dir-to-file").write_text("now a file")
    (root / "etc/link").unlink()
    (root / "etc/link").symlink_to("/usr/bin/tool")
    (root / "usr/bin/mode").chmod(0o600)
    os.chown(root / "usr/bin/tool", 1000, 1000)
    (root / "home/u/code/hello.py").write_text("print(1)\nprint('one more line')\n")
    (root / "home/u/code/deep/er").mkdir(parents=True)
    (root / "home/u/code/deep/er/file").write_text("deep")
    (root / "etc" / ODD).write_text("odd name")


def layer_over(cache: Path, folder: Path, image: images.Image, build_id: str, tmp: Path,
               change: object) -> tuple[dict[str, tuple[object, ...]], images.Image]:
    """Mount an overlay build root on `image`'s cached tree, change it, pack its upper layer as build_id's
    image; (what the build saw, the new image)."""
    root = tmp / f"build-{build_id}" / "rootfs"
    served = trees.mount(cache, image, root)
    assert served is (len(image.layers) > 1), "a whole image is unpacked first; a layer's stack is cached"
    change(root)  # type: ignore[operator]
    seen = snapshot(root)
    trees.pack_layer(cache, image, root, folder, build_id)
    assert not root.exists() and not mounts_under(tmp)
    return seen, images.load(folder, build_id)


def test_a_layer_lays_out_to_exactly_the_tree_the_build_saw_and_holds_only_what_changed(tmp_path: Path) -> None:
    folder, cache = tmp_path / "images", tmp_path / "trees"
    base = tmp_path / "base"
    parent_tree(base)
    images.pack_whole(base, folder, "b1")
    seen, image = layer_over(cache, folder, images.load(folder, "b1"), "b2", tmp_path, change_everything)
    assert [(lay.build_id, lay.parent) for lay in image.layers] == [("b1", None), ("b2", "b1")]
    meta = json.loads(images.layer_file(image.archive).read_text())
    assert sorted(meta["removed"]) == ["etc/dir-to-file", "etc/file-to-dir", "etc/gone", "etc/gone-dir"]
    assert sorted(meta["replaced"]) == ["etc/file-to-dir", "etc/replaced"]  # made where something was
    held = members(image.archive)
    assert {"etc/changed", "etc/new", "etc/replaced/fresh", f"etc/{ODD}", "home/u/code/deep/er/file"} <= held
    assert not held & {"etc/keep", "etc/gone", "etc/replaced/old-1"}, "only what changed"
    assert "usr/bin/tool" in held, "its owner changed: copied up whole"

    out = tmp_path / "laid-out"
    images.unpack(image, out)
    assert snapshot(out) == seen
    assert not any(x.startswith("trusted.overlay.") for x in os.listxattr(out / "etc/replaced"))

    # a layer over a layer: b2's build root is an overlay on b2's cached layer over b1's tree (nothing is
    # unpacked), and b3's layer goes over that
    def more(root: Path) -> None:
        (root / "etc/new").unlink()
        (root / "etc/replaced/fresh").write_text("fresher")
        (root / "usr/bin/tool").unlink()

    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == ["b1", "b2"] and (cache / "b2/layer").is_dir()
    seen3, image3 = layer_over(cache, folder, image, "b3", tmp_path, more)
    assert [lay.build_id for lay in image3.layers] == ["b1", "b2", "b3"]
    assert not (cache / "b2/rootfs").exists(), "b2's tree was never laid out whole"
    out3 = tmp_path / "laid-out-3"
    images.unpack(image3, out3)
    assert snapshot(out3) == seen3
    assert not mounts_under(tmp_path)

    # once the whole tree below them is evicted (KEEP newer whole trees used since), the layers go too
    for name in ("o1", "o2"):
        images.pack_whole(base, folder, name)
        trees.mount(cache, images.load(folder, name), tmp_path / f"use-{name}" / "rootfs")
        trees.unmount(tmp_path / f"use-{name}" / "rootfs")
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == ["o1", "o2"]


def test_a_layer_whose_parent_is_gone_or_whose_layer_file_is_damaged_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    (tmp_path / "t/etc").mkdir(parents=True)
    images.pack_whole(tmp_path / "t", folder, "p")
    images.pack_whole(tmp_path / "t", folder, "c")
    images.layer_file(images.archive_path(folder, "c")).write_text(json.dumps(
        {"layer_version": 1, "parent": "p", "removed": [], "replaced": []}))
    assert [lay.build_id for lay in images.load(folder, "c").layers] == ["p", "c"]
    images.archive_path(folder, "p").unlink()
    with pytest.raises(images.Missing, match=r"build c has no packed root filesystem: .*/p\.tar\.zst, the image "
                                             r"build c's layer is over, is not there"):
        images.load(folder, "c")
    for bad in ({"layer_version": 1, "parent": "p", "removed": ["../../etc/passwd"], "replaced": []},
                {"layer_version": 1, "parent": "c", "removed": [], "replaced": ["/abs"]}, "not json {"):
        images.layer_file(images.archive_path(folder, "c")).write_text(bad if isinstance(bad, str) else json.dumps(bad))
        with pytest.raises(SandboxError, match=r"c\.layer\.json is damaged"):
            images.load(folder, "c")


def test_a_removal_never_follows_a_link_out_of_the_tree(tmp_path: Path) -> None:
    """A layer's removals walk the laid-out tree without following links: one planted (by a repository's
    code, as root, in the parent) where a removal passes is a damaged image, and the host is untouched."""
    folder, witness = tmp_path / "images", tmp_path / "host"
    (witness / "victim").mkdir(parents=True)
    (witness / "victim/file").write_text("host data")
    parent = tmp_path / "parent"
    (parent / "etc").mkdir(parents=True)
    (parent / "etc/planted").symlink_to(witness)
    images.pack_whole(parent, folder, "p")
    child = tmp_path / "child"
    child.mkdir()
    images.pack_whole(child, folder, "c")
    for field in ("removed", "replaced"):
        images.layer_file(images.archive_path(folder, "c")).write_text(json.dumps(
            {"layer_version": 1, "parent": "p", "removed": [], "replaced": [], field: ["etc/planted/victim"]}))
        with pytest.raises(SandboxError, match="damaged: a layer removes 'etc/planted/victim', but 'planted'"):
            images.unpack(images.load(folder, "c"), tmp_path / f"out-{field}")
        assert (witness / "victim/file").read_text() == "host data"

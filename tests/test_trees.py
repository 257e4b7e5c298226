"""The tree cache (sandbox/trees.py): real overlayfs mounts of real packed trees (small ones, so fast)."""

from __future__ import annotations

import os
from pathlib import Path

from imagefactory.sandbox import trees
from imagefactory.sandbox.archive import pack
from imagefactory.sandbox.images import whole
from imagefactory.sandbox.teardown import mounts_under, remove_tree


def packed(tmp_path: Path, name: str, marker: str) -> Path:
    tree = tmp_path / f"src-{name}-{marker}"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/marker").write_text(marker)
    (tree / "etc/link").symlink_to("/etc/passwd")  # a tree is untrusted: its links are only data here
    archive = tmp_path / "images" / f"{name}.tar.zst"
    pack(tree, archive)
    remove_tree(tree)
    return archive


def snapshot(tree: Path) -> dict[str, tuple[int, int, int, bytes]]:
    seen = {}
    for top, dirs, files in os.walk(tree):
        for name in dirs + files:
            path = Path(top) / name
            st = path.lstat()
            if path.is_symlink():
                body = os.fsencode(str(path.readlink()))
            else:
                body = path.read_bytes() if path.is_file() else b""
            seen[str(path.relative_to(tree))] = (st.st_mode, st.st_size, st.st_mtime_ns, body)
    return seen


def test_a_cached_tree_is_served_unmodified_until_its_archive_changes(tmp_path: Path) -> None:
    cache, root = tmp_path / "trees", tmp_path / "build" / "rootfs"
    archive = packed(tmp_path, "b-1", "one")
    assert trees.mount(cache, whole(archive), root) is False, "nothing cached yet: unpacked into the cache"
    cached = cache / "b-1" / "rootfs"
    before = snapshot(cached)
    assert mounts_under(root) == [str(root)] and (root / "etc/marker").read_text() == "one"
    (root / "etc/marker").write_text("changed by the build")
    (root / "etc/new").write_text("new")
    (root / "etc/link").unlink()
    assert snapshot(cached) == before, "a build root's writes go to its upper layer, never to the cached tree"
    trees.unmount(root)
    assert not root.exists() and not trees.layers_dir(root).exists() and not mounts_under(tmp_path)

    assert trees.mount(cache, whole(archive), root) is True, "the same archive: served from the cache"
    assert (root / "etc/marker").read_text() == "one" and not (root / "etc/new").exists()
    trees.unmount(root)

    changed = packed(tmp_path, "b-1", "two")  # the same build's archive, packed again with other content
    assert changed == archive
    assert trees.mount(cache, whole(archive), root) is False, "a changed archive is never served from a stale tree"
    assert (root / "etc/marker").read_text() == "two"
    trees.unmount(root)


def test_keep_moves_a_packed_tree_in_and_the_least_recently_used_unused_trees_go(tmp_path: Path) -> None:
    cache = tmp_path / "trees"
    tree = tmp_path / "build-a" / "rootfs"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/marker").write_text("a")
    archive_a = tmp_path / "images" / "a.tar.zst"
    pack(tree, archive_a)
    trees.keep(cache, whole(archive_a), tree)
    assert not tree.exists() and (cache / "a/rootfs/etc/marker").read_text() == "a"
    root_a = tmp_path / "use-a" / "rootfs"
    assert trees.mount(cache, whole(archive_a), root_a) is True, "a kept tree is served without unpacking"
    for name in ("b", "c"):  # a stays mounted (in use) while newer trees come and go
        root = tmp_path / f"use-{name}" / "rootfs"
        trees.mount(cache, whole(packed(tmp_path, name, name)), root)
        trees.unmount(root)
    assert sorted(p.name for p in cache.iterdir()) == ["a", "b", "c"], "a tree in use is never evicted"
    trees.unmount(root_a)
    root_d = tmp_path / "use-d" / "rootfs"
    trees.mount(cache, whole(packed(tmp_path, "d", "d")), root_d)
    trees.unmount(root_d)
    assert sorted(p.name for p in cache.iterdir()) == ["c", "d"], f"at most {trees.KEEP}, the most recently used"

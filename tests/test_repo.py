"""Repository specs: every kind resolves to a checkout at the right commit; bad ones fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MakeRepo, git

from imagefactory.errors import RepoError
from imagefactory.repo import classify, dir_digest, image_name, resolve


def quiet(_: str) -> None:
    pass


def test_classify_each_kind() -> None:
    def no(_: str) -> bool:
        return False

    names = frozenset({"dhsvm-opt"})
    assert classify("ChristinaB/dhsvm-opt", exists=no, is_git=no, catalog_names=names).location == \
        "https://github.com/ChristinaB/dhsvm-opt"
    assert classify("git@github.com:a/b.git", exists=no, is_git=no, catalog_names=names).kind == "url"
    assert classify("ssh://git@host/a/b", exists=no, is_git=no, catalog_names=names).kind == "url"
    assert classify("dhsvm-opt", exists=no, is_git=no, catalog_names=names).kind == "catalog"
    with pytest.raises(RepoError, match="not a directory"):
        classify("no-such-thing", exists=no, is_git=no, catalog_names=names)


def test_image_names() -> None:
    assert image_name("https://github.com/ChristinaB/dhsvm-opt.git") == "dhsvm-opt"
    assert image_name("/x/My_Repo.v2/") == "my-repo-v2"


def test_local_git_repo_default_branch_and_refs(make_repo: MakeRepo, tmp_path: Path) -> None:
    root = make_repo({"requirements.txt": "six\n"}, name="proj", branch="trunk")
    first = git(root, "rev-parse", "HEAD")
    git(root, "tag", "v1")
    git(root, "checkout", "-q", "-b", "feature")
    (root / "new.txt").write_text("x")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "second")
    second = git(root, "rev-parse", "HEAD")
    git(root, "checkout", "-q", "trunk")
    cache = tmp_path / "cache"
    default = resolve(str(root), ref=None, cache_dir=cache, catalog_repos={}, progress=quiet)
    assert (default.ref, default.commit, default.name) == ("trunk", first, "proj")
    assert default.url == root.as_uri()
    feature = resolve(root.as_uri(), ref="feature", cache_dir=cache, catalog_repos={}, progress=quiet)
    assert feature.commit == second and (feature.path / "new.txt").exists()
    tag = resolve(root.as_uri(), ref="v1", cache_dir=cache, catalog_repos={}, progress=quiet)
    assert tag.commit == first and not (tag.path / "new.txt").exists()
    by_sha = resolve(root.as_uri(), ref=first, cache_dir=cache, catalog_repos={}, progress=quiet)
    assert by_sha.commit == first


def test_plain_folder_gets_a_content_digest(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "requirements.txt").write_text("six\n")
    found = resolve(str(folder), ref=None, cache_dir=tmp_path / "c", catalog_repos={}, progress=quiet)
    assert found.commit == dir_digest(folder) and found.commit.startswith("dir-sha256:")
    (folder / "requirements.txt").write_text("six==1.16.0\n")
    assert dir_digest(folder) != found.commit
    with pytest.raises(RepoError, match="plain folder"):
        resolve(str(folder), ref="main", cache_dir=tmp_path / "c", catalog_repos={}, progress=quiet)


def test_catalog_name_resolves_to_its_repo(make_repo: MakeRepo, tmp_path: Path) -> None:
    root = make_repo({"requirements.txt": "six\n"}, name="proj")
    found = resolve("my-image", ref=None, cache_dir=tmp_path / "c", catalog_repos={"my-image": root.as_uri()},
                    progress=quiet)
    assert found.name == "my-image" and found.url == root.as_uri()


def test_unreachable_repo_and_unknown_ref_fail_clearly(make_repo: MakeRepo, tmp_path: Path) -> None:
    with pytest.raises(RepoError, match="cannot fetch"):
        resolve("file:///nonexistent/repo.git", ref=None, cache_dir=tmp_path / "c", catalog_repos={},
                progress=quiet)
    root = make_repo({"a.txt": "a"}, name="proj")
    with pytest.raises(RepoError, match="no-such-branch"):
        resolve(root.as_uri(), ref="no-such-branch", cache_dir=tmp_path / "c", catalog_repos={}, progress=quiet)

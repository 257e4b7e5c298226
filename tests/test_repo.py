"""Repository specs: every kind resolves to a checkout at the right commit; bad ones fail clearly."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import MakeRepo, git

from imagefactory.errors import RepoError
from imagefactory.proc import CommandError
from imagefactory.repo import classify, dir_digest, image_name, remote_commit, resolve


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


def _two_branches(make_repo: MakeRepo) -> tuple[Path, dict[str, str]]:
    root = make_repo({"which.txt": "main\n"}, name="proj")
    commits = {"main": git(root, "rev-parse", "HEAD")}
    git(root, "checkout", "-q", "-b", "other")
    (root / "which.txt").write_text("other\n")
    git(root, "commit", "-q", "-am", "other")
    commits["other"] = git(root, "rev-parse", "HEAD")
    git(root, "checkout", "-q", "main")
    return root, commits


def test_a_checkout_is_never_changed_by_a_later_fetch_of_another_ref(make_repo: MakeRepo, tmp_path: Path) -> None:
    root, commits = _two_branches(make_repo)
    cache = tmp_path / "cache"
    first = resolve(root.as_uri(), ref="main", cache_dir=cache, catalog_repos={}, progress=quiet)
    second = resolve(root.as_uri(), ref="other", cache_dir=cache, catalog_repos={}, progress=quiet)
    assert first.path != second.path
    assert (first.path / "which.txt").read_text() == "main\n" and git(first.path, "rev-parse", "HEAD") == first.commit
    assert (second.path / "which.txt").read_text() == "other\n"
    assert (first.commit, second.commit) == (commits["main"], commits["other"])
    again = resolve(root.as_uri(), ref="main", cache_dir=cache, catalog_repos={}, progress=quiet)
    assert again.path == first.path  # made once per commit


def test_bakes_of_one_repo_at_different_refs_at_once_each_get_their_commit(make_repo: MakeRepo,
                                                                          tmp_path: Path) -> None:
    """Eight threads and two processes resolve both refs of one new repository at the same time."""
    root, commits = _two_branches(make_repo)
    cache = tmp_path / "cache"
    script = ("import sys; from pathlib import Path; from imagefactory.repo import resolve\n"
              "c = resolve(sys.argv[1], ref=sys.argv[2], cache_dir=Path(sys.argv[3]), catalog_repos={}, "
              "progress=lambda _: None)\n"
              "print(c.commit, (c.path / 'which.txt').read_text().strip())\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, root.as_uri(), ref, str(cache)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for ref in ("main", "other")]
    barrier = threading.Barrier(8)

    def one(ref: str) -> tuple[str, str, str]:
        barrier.wait()
        found = resolve(root.as_uri(), ref=ref, cache_dir=cache, catalog_repos={}, progress=quiet)
        return ref, found.commit, (found.path / "which.txt").read_text().strip()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, ["main", "other"] * 4))
    for proc, ref in zip(procs, ("main", "other"), strict=True):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append((ref, *out.split()))
    assert results and all(commit == commits[ref] and text == ref for ref, commit, text in results)


def test_remote_commit_asks_ls_remote_for_branches_and_tags(make_repo: MakeRepo, tmp_path: Path) -> None:
    root = make_repo({"a.py": "1\n"})
    first = git(root, "rev-parse", "HEAD")
    git(root, "tag", "-a", "v1", "-m", "v1")  # an annotated tag: its commit, not the tag object
    (root / "a.py").write_text("2\n")
    git(root, "commit", "-qam", "two")
    second = git(root, "rev-parse", "HEAD")
    url = root.as_uri()
    assert remote_commit(url, "main", timeout=10) == second
    assert remote_commit(url, "v1", timeout=10) == first
    assert remote_commit(url, first, timeout=10) == first
    with pytest.raises(RepoError, match="no branch or tag 'gone'"):
        remote_commit(url, "gone", timeout=10)
    with pytest.raises(CommandError):
        remote_commit((tmp_path / "nowhere").as_uri(), "main", timeout=10)

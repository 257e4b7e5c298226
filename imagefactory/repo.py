"""Resolve a repository spec and check it out at a ref, recording the resolved commit.

A spec is, in this order: an existing local directory (a git work tree is cloned at its commit; a plain
folder is used as it is and identified by a content digest); a URL (`file://`, `https://`, `http://`,
`ssh://`, `git@host:owner/name`); `owner/name` (GitHub); or the name of an image already in the catalog.
Clones are cached under `<home>/.cache/git/<url digest>/`: a bare `mirror.git` per URL, fetched shallow
where the server allows and only under its lock, and `commits/<sha>/`, one checkout per commit, made once
and never changed after, so bakes of one repository at different refs at the same time each get their own
commit.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # no git on PATH: MissingProgram on first use, not ImportError
import git

from imagefactory.errors import RepoError
from imagefactory.files import locked
from imagefactory.names import NAME_RE as IMAGE_NAME_RE
from imagefactory.proc import MissingProgram, run

URL_RE = re.compile(r"(?:[a-z][a-z0-9+.-]*://|[\w.-]+@[\w.-]+:).+", re.IGNORECASE)
GITHUB_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "GCM_INTERACTIVE": "never"}
COMMIT_RE = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Spec:
    """What a user's repo argument means, before anything is fetched."""

    kind: str      # "dir", "git-dir", "url", "catalog"
    location: str  # path for dir/git-dir, URL for url, image name for catalog


@dataclass(frozen=True)
class Checkout:
    name: str
    url: str
    ref: str | None
    commit: str
    path: Path
    is_git: bool


def classify(spec: str, *, exists: Callable[[str], bool], is_git: Callable[[str], bool],
             catalog_names: frozenset[str]) -> Spec:
    """Decide what kind of spec this is. Pure given the two probes."""
    if not spec.strip():
        raise RepoError("the repo argument is empty", "give a path, a git URL, owner/name, or a catalog image name")
    if exists(spec):
        return Spec("git-dir" if is_git(spec) else "dir", str(Path(spec).resolve()))
    if URL_RE.fullmatch(spec):
        return Spec("url", spec)
    if GITHUB_RE.fullmatch(spec) and not spec.startswith((".", "/")):
        return Spec("url", f"https://github.com/{spec.removesuffix('.git')}")
    if spec in catalog_names:
        return Spec("catalog", spec)
    raise RepoError(f"repo {spec!r} is not a directory, a git URL, owner/name, or an image in the catalog",
                    "check the spelling; local paths must exist")


def image_name(location: str) -> str:
    """A catalog/AMI-safe name from the last part of a path or URL: lowercase, digits and dashes."""
    last = re.split(r"[/:]", location.rstrip("/"))[-1].removesuffix(".git")
    name = re.sub(r"[^a-z0-9]+", "-", last.lower()).strip("-")[:63].strip("-")
    if not name or not IMAGE_NAME_RE.fullmatch(name):
        raise RepoError(f"cannot make an image name from {location!r}", "pass --name NAME")
    return name


def dir_digest(root: Path) -> str:
    """Content digest of a plain folder: paths and bytes of every file, in sorted order, .git excluded."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for fname in sorted(filenames):
            path = Path(dirpath) / fname
            if path.is_symlink() or not path.is_file():
                continue
            h.update(path.relative_to(root).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return "dir-sha256:" + h.hexdigest()


def _looks_like_git(path: str) -> bool:
    try:
        git.Repo(path, search_parent_directories=False)
        return True
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return False


def resolve(spec: str, *, ref: str | None, cache_dir: Path, catalog_repos: dict[str, str],
            progress: Callable[[str], None]) -> Checkout:
    """Resolve and check out `spec` at `ref` (default branch when None)."""
    kind = classify(spec, exists=lambda s: Path(s).is_dir(), is_git=_looks_like_git,
                    catalog_names=frozenset(catalog_repos))
    if kind.kind == "catalog":
        progress(f"repo: {spec!r} is a catalog image; using its repo {catalog_repos[spec]}")
        found = resolve(catalog_repos[spec], ref=ref, cache_dir=cache_dir, catalog_repos={}, progress=progress)
        return Checkout(spec, found.url, found.ref, found.commit, found.path, found.is_git)
    if kind.kind == "dir":
        if ref:
            raise RepoError(f"--ref {ref} given, but {kind.location} is a plain folder without git",
                            "drop --ref, or point at a git repository")
        return Checkout(image_name(kind.location), kind.location, None, dir_digest(Path(kind.location)),
                        Path(kind.location), False)
    url = Path(kind.location).as_uri() if kind.kind == "git-dir" else kind.location
    return _fetch(url, ref, cache_dir, progress)


def _fetch(url: str, ref: str | None, cache_dir: Path, progress: Callable[[str], None]) -> Checkout:
    """Fetch `ref` of `url` into the URL's mirror (under its lock), then the commit's own checkout."""
    place = _place(cache_dir, url)
    started = time.monotonic()
    progress(f"repo: fetching {url} at {ref or 'its default branch'} ...")
    try:
        with locked(place / "mirror.git", what=f"the clone of {url}"):
            mirror = git.Repo(place / "mirror.git") if (place / "mirror.git").is_dir() else _init(place, url)
            with mirror.git.custom_environment(**GIT_ENV):
                branch = ref or _default_branch(mirror, url)
                commit = _fetch_ref(mirror, branch)
                mirror.git.update_ref(f"refs/imagefactory/{commit}", commit)
        path = _commit_checkout(place, commit)
    except git.GitCommandNotFound:
        raise MissingProgram("git") from None
    except git.GitCommandError as exc:
        lines = [ln for ln in (exc.stderr or "").strip().splitlines() if ln.strip()]
        reason = lines[-1].strip().removeprefix("stderr: ").strip("' ") if lines else str(exc)
        raise RepoError(f"cannot fetch {ref or 'the default branch'} of {url}: {reason}",
                        "check the URL and ref; for a private repo use an ssh URL with a loaded key") from None
    progress(f"repo: {url} @ {branch} = {commit[:12]} ({time.monotonic() - started:.1f}s)")
    return Checkout(image_name(url), url, branch, commit, path, True)


def _place(cache_dir: Path, url: str) -> Path:
    """The clone cache's folder of one URL: its mirror.git and commits/."""
    return cache_dir / "git" / hashlib.sha256(url.encode()).hexdigest()[:16]


def _init(place: Path, url: str) -> git.Repo:
    place.mkdir(parents=True, exist_ok=True)
    repo = git.Repo.init(place / "mirror.git", bare=True)
    repo.create_remote("origin", url)
    return repo


def _commit_checkout(place: Path, commit: str) -> Path:
    """`place/commits/COMMIT`: a checkout of one commit, made once (under its lock, in a temp folder renamed
    into place) and never changed after; its files are read-only."""
    dest = place / "commits" / commit
    with locked(dest, what=f"the checkout of {commit[:12]}"):
        if dest.is_dir():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{commit[:12]}-", dir=dest.parent))
        try:
            repo = git.Repo.init(tmp)
            with repo.git.custom_environment(**GIT_ENV):
                repo.git.fetch("--quiet", "--depth", "1", "--", str(place / "mirror.git"),
                               f"refs/imagefactory/{commit}")
                repo.git.checkout("--quiet", "--detach", commit)
            _read_only(tmp)
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def _read_only(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode & ~0o222)


def _default_branch(repo: git.Repo, url: str) -> str:
    out = repo.git.ls_remote("--symref", "origin", "HEAD")
    for line in out.splitlines():
        if line.startswith("ref: refs/heads/"):
            return line.split()[1].removeprefix("refs/heads/")
    raise git.GitCommandError(["git", "ls-remote"], 128, f"{url} has no default branch (empty repository?)")


def _fetch_ref(repo: git.Repo, ref: str) -> str:
    """The commit of a branch, tag or commit, fetched shallow; a full fetch when the server refuses
    shallow/by-sha."""
    try:
        repo.git.fetch("--depth", "1", "origin", ref)
        return repo.git.rev_parse("FETCH_HEAD^{commit}")
    except git.GitCommandError:
        repo.git.fetch("--tags", "origin", "+refs/heads/*:refs/remotes/origin/*")
        target = next((c for c in (f"origin/{ref}", ref) if _rev_exists(repo, c)), None)
        if target is None:
            raise git.GitCommandError(["git", "fetch"], 128, f"no branch, tag or commit named {ref!r}") from None
        return repo.git.rev_parse(f"{target}^{{commit}}")


def _rev_exists(repo: git.Repo, rev: str) -> bool:
    try:
        repo.git.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}")
        return True
    except git.GitCommandError:
        return False


def remote_commit(url: str, ref: str, *, timeout: float) -> str:
    """The commit branch or tag `ref` of `url` points at now, asked with `git ls-remote` (no clone, no
    fetch); a commit id is its own answer. Raises RepoError when the ref is gone, CommandError when git
    fails (repository gone, no network), subprocess.TimeoutExpired after `timeout` seconds."""
    if COMMIT_RE.fullmatch(ref):
        return ref
    done = run(["git", "ls-remote", "--", url, f"refs/heads/{ref}", f"refs/tags/{ref}", f"refs/tags/{ref}^{{}}"],
               env={**os.environ, **GIT_ENV}, timeout=timeout)
    found = dict(reversed(line.split("\t", 1)) for line in done.stdout.splitlines() if "\t" in line)
    for name in (f"refs/tags/{ref}^{{}}", f"refs/heads/{ref}", f"refs/tags/{ref}"):  # a tag's commit, peeled
        if name in found:
            return found[name]
    raise RepoError(f"{url} has no branch or tag {ref!r} any more", "bake it again with --ref naming one that exists")


def cached_checkout(cache_dir: Path, url: str, commit: str) -> Path | None:
    """The checkout of `commit` of `url` a bake left in the clone cache, if it is there."""
    path = _place(cache_dir, url) / "commits" / commit
    return path if path.is_dir() else None

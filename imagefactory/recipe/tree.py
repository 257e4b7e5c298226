"""The repository as detection sees it: a root directory and its file list, never the cwd.

`RepoTree.scan(root)` lists every file below `root` (posix, repo-relative, `.git/` excluded, symlinks
not followed out of the tree). `places` are the folders detection looks in, in order ("" is the root);
`derive` narrows a tree to its places with `at()` once the layout is decided.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from imagefactory.errors import RecipeError

SKIP_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".ipynb_checkpoints"})
MAX_READ_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class RepoTree:
    """`files` are posix paths relative to `root`; `places` are the folders detectors look in."""

    root: Path
    files: tuple[str, ...]
    places: tuple[str, ...] = ("",)

    @classmethod
    def scan(cls, root: Path) -> RepoTree:
        root = Path(root).resolve()
        if not root.is_dir():
            raise RecipeError(f"{root}: not a directory", "give the path of a repository checkout")
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            rel = Path(dirpath).relative_to(root).as_posix()
            for name in filenames:
                found.append(name if rel == "." else f"{rel}/{name}")
        return cls(root=root, files=tuple(sorted(found)))

    def at(self, places: tuple[str, ...]) -> RepoTree:
        return replace(self, places=places)

    def has(self, rel: str) -> bool:
        return rel in self._fileset()

    def find(self, name: str) -> str | None:
        """The first `place/name` that exists, in place order."""
        for place in self.places:
            rel = join(place, name)
            if self.has(rel):
                return rel
        return None

    def in_folder(self, folder: str) -> tuple[str, ...]:
        """Files directly inside `folder` ("" = the root), not in its sub-folders."""
        return tuple(f for f in self.files if parent(f) == folder)

    def folders(self) -> tuple[str, ...]:
        """Every folder holding at least one file, shallowest first then alphabetical."""
        seen = {parent(f) for f in self.files} - {""}
        return tuple(sorted(seen, key=lambda d: (d.count("/"), d)))

    def read_text(self, rel: str) -> str:
        """The file's text; refuses paths leaving the tree (`..`, symlinks out) and huge files."""
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root):
            raise RecipeError(f"{rel}: points outside the repository",
                              "keep environment files inside the repo")
        try:
            if path.stat().st_size > MAX_READ_BYTES:
                raise RecipeError(f"{rel}: larger than {MAX_READ_BYTES // 1024 // 1024} MB",
                                  "is it really a config file?")
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise RecipeError(f"{rel}: cannot read ({exc.strerror})", "check the file") from None

    def _fileset(self) -> frozenset[str]:
        cached = self.__dict__.get("_set")
        if cached is None:
            cached = frozenset(self.files)
            object.__setattr__(self, "_set", cached)
        return cached


def join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def parent(rel: str) -> str:
    p = PurePosixPath(rel).parent.as_posix()
    return "" if p == "." else p


def normalize(folder: str, rel: str) -> str | None:
    """`folder/rel` with `..` folded; None if it climbs out of the repository."""
    parts: list[str] = []
    for part in PurePosixPath(join(folder, rel)).parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)

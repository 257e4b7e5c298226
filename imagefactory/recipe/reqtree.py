"""Follow a requirements file's `-r`/`-c` includes inside the repository and collect what they say.

Paths in an include are relative to the including file's folder, as pip reads them. An include that is
missing or leaves the repository raises `RecipeError` naming the including file and line; a remote
(http) include is left to pip and noted.
"""

from __future__ import annotations

from dataclasses import dataclass

from imagefactory.errors import RecipeError
from imagefactory.recipe.findings import Finding, Pin
from imagefactory.recipe.reqfile import ReqLine, installs_repo, parse_requirements
from imagefactory.recipe.tree import RepoTree, normalize, parent

MAX_INCLUDES = 50


@dataclass(frozen=True)
class ReqSet:
    """Everything a requirements file (and its includes) says, flattened."""

    files: tuple[Finding, ...]   # the included/constraint files, as used findings
    pins: tuple[Pin, ...]
    names: tuple[str, ...]       # every named requirement (normalized), pinned or not
    index_urls: tuple[str, ...]
    count: int                   # requirements (not options) across all files
    installs_repo: bool
    notes: tuple[str, ...]


def follow(tree: RepoTree, rel: str, lines: tuple[ReqLine, ...]) -> ReqSet:
    """Walk the includes of `rel` (already parsed as `lines`), depth first, each file once."""
    state = _Walk(tree)
    state.visit(rel, lines, constraint=False)
    return ReqSet(tuple(state.files), tuple(state.pins), tuple(state.names), tuple(state.index_urls), state.count,
                  state.repo, tuple(state.notes))


class _Walk:
    def __init__(self, tree: RepoTree) -> None:
        self.tree = tree
        self.seen: set[str] = set()
        self.files: list[Finding] = []
        self.pins: list[Pin] = []
        self.names: list[str] = []
        self.index_urls: list[str] = []
        self.notes: list[str] = []
        self.count = 0
        self.repo = False

    def visit(self, rel: str, lines: tuple[ReqLine, ...], constraint: bool) -> None:
        self.seen.add(rel)
        if not constraint:
            self.repo = self.repo or installs_repo(lines)
        for line in lines:
            if line.kind in ("requirement-file", "constraint"):
                self.include(rel, line)
            elif line.kind == "index-url":
                self.index_urls.append(line.value)
            elif line.kind in ("requirement", "url", "editable") and not constraint:
                self.count += 1
                if line.name and line.name not in self.names:
                    self.names.append(line.name)
                if line.pin and line.name:
                    self.pins.append(Pin(line.name, line.pin, f"{rel}:{line.line}"))

    def include(self, rel: str, line: ReqLine) -> None:
        if "://" in line.value:
            scheme = line.value.split("://")[0]
            self.notes.append(f"{rel}:{line.line}: remote include {scheme}://… left to pip")
            return
        target = normalize(parent(rel), line.value)
        if target is None:
            raise RecipeError(f"{rel}:{line.line}: include {line.value!r} points outside the repository",
                              "keep requirement files inside the repository")
        if not self.tree.has(target):
            raise RecipeError(f"{rel}:{line.line}: included file {line.value!r} does not exist ({target})",
                              "fix the path; it is relative to the including file's folder")
        if target in self.seen:
            return
        if len(self.seen) >= MAX_INCLUDES:
            raise RecipeError(f"{rel}:{line.line}: more than {MAX_INCLUDES} included files", "flatten them")
        constraint = line.kind == "constraint"
        what = "constraints" if constraint else "requirements"
        self.files.append(Finding(target, "pip-requirements", f"{what} included by {rel} line {line.line}"))
        self.visit(target, parse_requirements(self.tree.read_text(target), target), constraint)

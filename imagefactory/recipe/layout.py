"""Where the configuration lives: which folders the detectors look in, and what that leaves out.

Rules, in order:
1. `binder/` (else `.binder/`) holding files is the only conventional place; the root's configuration
   files are then ignored, as repo2docker does (and `.binder/` too when both exist).
2. Otherwise the root is the conventional place.
3. If no conventional place holds an environment file (environment.yml/.yaml, requirements.txt, Pipfile,
   Pipfile.lock), sub-folders are searched: environment/, env/, envs/, conda/, requirements/, ci/, then
   any other folder, shallowest first then alphabetical (hidden folders are skipped). The first folder
   holding an environment file is added after the conventional place; the others are reported as
   ignored. When the root is an installable package (setup.py, or pyproject.toml with a [project] or
   [build-system] table) only the named folders are searched: the package states its own dependencies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imagefactory.recipe.findings import Finding
from imagefactory.recipe.tree import RepoTree, join

BINDER_DIRS = ("binder", ".binder")
ENV_FILES = ("environment.yml", "environment.yaml", "requirements.txt", "Pipfile", "Pipfile.lock")
CONFIG_FILES = (*ENV_FILES, "apt.txt", "postBuild", "start", "runtime.txt", "setup.py", "setup.cfg",
                "pyproject.toml", "install.R", "DESCRIPTION", "Project.toml", "REQUIRE", "Dockerfile")
SEARCH_ORDER = ("environment", "env", "envs", "conda", "requirements", "ci")
KINDS = {
    "environment.yml": "conda-env", "environment.yaml": "conda-env", "requirements.txt": "pip-requirements",
    "Pipfile": "pipfile", "Pipfile.lock": "pipfile", "apt.txt": "apt", "postBuild": "postBuild",
    "start": "start", "runtime.txt": "runtime", "setup.py": "package", "setup.cfg": "package",
    "pyproject.toml": "package", "install.R": "r", "DESCRIPTION": "r", "Project.toml": "julia",
    "REQUIRE": "julia", "Dockerfile": "dockerfile",
}
PACKAGE_TABLE = re.compile(r"^\[(project|build-system)\]", re.MULTILINE)


@dataclass(frozen=True)
class Layout:
    places: tuple[str, ...]
    ignored: tuple[Finding, ...]
    notes: tuple[str, ...]


def kind_of(name: str) -> str:
    return KINDS.get(name.rsplit("/", 1)[-1], "other")


def decide(tree: RepoTree) -> Layout:
    binders = [d for d in BINDER_DIRS if tree.in_folder(d)]
    if binders:
        conventional = (binders[0],)
        ignored = [*_config_in(tree, "", f"{binders[0]}/ exists, so (as repo2docker does) the root's "
                                         "configuration files are ignored")]
        ignored += [Finding(f, kind_of(f), f"{binders[0]}/ is used; {d}/ is ignored when both exist")
                    for d in binders[1:] for f in tree.in_folder(d)]
        notes = [f"configuration taken from {binders[0]}/"]
    else:
        conventional, ignored, notes = ("",), [], []
    if any(tree.has(join(p, n)) for p in conventional for n in ENV_FILES):
        return Layout(conventional, tuple(ignored), tuple(notes))
    return _search(tree, conventional, ignored, notes)


def _search(tree: RepoTree, conventional: tuple[str, ...], ignored: list[Finding],
            notes: list[str]) -> Layout:
    candidates = [d for d in _search_order(tree) if _env_files(tree, d)]
    if not candidates:
        return Layout(conventional, tuple(ignored), tuple(notes))
    chosen = candidates[0]
    where = "the root" if conventional == ("",) else f"{conventional[0]}/"
    notes.append(f"no environment file in {where}; searched sub-folders and chose {chosen}/")
    for other in candidates[1:]:
        reason = f"{chosen}/ comes first in the search order (named folders, then shallowest, then A-Z)"
        ignored += [Finding(f, kind_of(f), reason) for f in _env_files(tree, other)]
    return Layout((*conventional, chosen), tuple(ignored), tuple(notes))


def _search_order(tree: RepoTree) -> list[str]:
    folders = [d for d in tree.folders()
               if d not in BINDER_DIRS and not any(p.startswith(".") for p in d.split("/"))]
    named = [d for d in SEARCH_ORDER if d in folders]
    if root_is_package(tree):
        return named
    return named + [d for d in folders if d not in named]


def _env_files(tree: RepoTree, folder: str) -> list[str]:
    return [join(folder, n) for n in ENV_FILES if tree.has(join(folder, n))]


def _config_in(tree: RepoTree, folder: str, reason: str) -> list[Finding]:
    return [Finding(join(folder, n), kind_of(n), reason) for n in CONFIG_FILES if tree.has(join(folder, n))]


def root_is_package(tree: RepoTree) -> bool:
    """setup.py, or a pyproject.toml with a [project] or [build-system] table, at the root."""
    if tree.has("setup.py"):
        return True
    return tree.has("pyproject.toml") and bool(PACKAGE_TABLE.search(tree.read_text("pyproject.toml")))

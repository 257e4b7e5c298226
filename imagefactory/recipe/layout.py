"""Where the configuration lives: which folders the detectors look in, and what that leaves out.

Rules, in order:
1. `binder/` (else `.binder/`) holding files is the only conventional place; the root's configuration
   files are then ignored, as repo2docker does (and `.binder/` too when both exist).
2. Otherwise the root is the conventional place.
3. If no conventional place holds an environment file (environment.yml/.yaml, requirements.txt, Pipfile,
   Pipfile.lock), sub-folders holding one are ranked by what their names and contents say (`rank`):
   environment/, env/, envs/, conda/, requirements/, binder-like names first; docs, tests, examples,
   docker steps and underscore-prefixed imports (`_import/`) last; a conda file, binder hooks (apt.txt,
   postBuild, runtime.txt) and a shallow place count for a folder. Ties go to the named search order, then
   shallowest, then A-Z (hidden folders are skipped, but for .devcontainer/). The best is added after the
   conventional place; the others are reported as ignored, and when the runner-up is close the notes list
   it with its files and say how to pick another (`--folder`, or the recipe's environment fields). When the root is an
   installable package (setup.py, or pyproject.toml with a [project] or [build-system] table) only the
   named folders are searched: the package states its own dependencies.
4. `folder` (the caller's --folder) names the sub-folder to use instead of any search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imagefactory.errors import RecipeError
from imagefactory.recipe.findings import Finding
from imagefactory.recipe.tree import RepoTree, join

BINDER_DIRS = ("binder", ".binder")
ENV_FILES = ("environment.yml", "environment.yaml", "requirements.txt", "Pipfile", "Pipfile.lock")
CONFIG_FILES = (*ENV_FILES, "apt.txt", "postBuild", "start", "runtime.txt", "setup.py", "setup.cfg",
                "pyproject.toml", "install.R", "DESCRIPTION", "Project.toml", "REQUIRE", "Dockerfile")
SEARCH_ORDER = ("environment", "env", "envs", "conda", "requirements", "ci")
GOOD_NAMES = frozenset({"environment", "environments", "env", "envs", "conda", "requirements", "binder", "setup",
                        ".devcontainer",
                        "install", "deps", "dependencies"})
LAST_NAMES = frozenset({"doc", "docs", "test", "tests", "testing", "example", "examples", "demo", "demos",
                        "docker", "dockers", "dockerfiles", "containers", "benchmarks", "bench", "archive", "old",
                        "legacy", "vendor", "third_party", "site", "website", "book", "_build"})
HOOKS = ("apt.txt", "postBuild", "runtime.txt", "start")
CLOSE = 1.0  # a runner-up within this many points is worth naming
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


def decide(tree: RepoTree, folder: str | None = None) -> Layout:
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
    if folder is not None:
        return _chosen(tree, conventional, ignored, notes, folder)
    if any(tree.has(join(p, n)) for p in conventional for n in ENV_FILES):
        return Layout(conventional, tuple(ignored), tuple(notes))
    return _search(tree, conventional, ignored, notes)


def _chosen(tree: RepoTree, conventional: tuple[str, ...], ignored: list[Finding], notes: list[str],
            folder: str) -> Layout:
    folder = folder.strip("/")
    if folder in conventional:
        return Layout(conventional, tuple(ignored), tuple(notes))
    if folder not in tree.folders():
        known = ", ".join(f"{d}/" for d in _search_order(tree, named_only=False) if _env_files(tree, d))
        raise RecipeError(f"--folder {folder!r}: no such folder with files in the repository",
                          f"pass one of: {known or 'none holds an environment file'}")
    notes.append(f"configuration taken from {folder}/ as asked (--folder)")
    return Layout((*conventional, folder), tuple(ignored), tuple(notes))


def _search(tree: RepoTree, conventional: tuple[str, ...], ignored: list[Finding],
            notes: list[str]) -> Layout:
    order = [d for d in _search_order(tree) if _env_files(tree, d)]
    if not order:
        return Layout(conventional, tuple(ignored), tuple(notes))
    scored = sorted(((rank(tree, d), -i, d) for i, d in enumerate(order)), reverse=True)
    (best, _, chosen), rest = scored[0], scored[1:]
    where = "the root" if conventional == ("",) else f"{conventional[0]}/"
    notes.append(f"no environment file in {where}; searched sub-folders and chose {chosen}/")
    close = [d for score, _, d in rest if best - score < CLOSE]
    if close:
        listed = "; ".join(f"{d}/ ({', '.join(_env_files(tree, d))})" for d in close)
        notes.append(f"{chosen}/ was chosen over folders that rank close to it: {listed}; to use another, derive "
                     f"with --folder (invoke recipe --repo ... --folder {close[0]} --force), or edit "
                     "environment.conda / environment.pip in the recipe")
    reason = (f"{chosen}/ comes first: folders are ranked by name and contents (environment, env, conda, "
              "requirements first; docs, tests, examples, docker steps and _-prefixed folders last)")
    for _, _, other in rest:
        ignored += [Finding(f, kind_of(f), reason) for f in _env_files(tree, other)]
    return Layout((*conventional, chosen), tuple(ignored), tuple(notes))


def rank(tree: RepoTree, folder: str) -> float:
    """How much a folder's names and contents say it holds the environment (higher: more)."""
    parts = folder.split("/")
    score = 0.0
    if any(p.lower() in GOOD_NAMES or p.lower().startswith(("env", "binder", "conda")) for p in parts):
        score += 3
    if any(p.lower() in LAST_NAMES for p in parts):
        score -= 3
    if any(p.startswith("_") for p in parts):
        score -= 4
    score += 1 if any(tree.has(join(folder, n)) for n in ("environment.yml", "environment.yaml")) else 0
    score += 0.5 * sum(tree.has(join(folder, n)) for n in HOOKS)
    return score - 0.25 * (len(parts) - 1)


def _search_order(tree: RepoTree, named_only: bool | None = None) -> list[str]:
    folders = [d for d in tree.folders()
               if d not in BINDER_DIRS and not any(p.startswith(".") and p != ".devcontainer" for p in d.split("/"))]
    named = [d for d in SEARCH_ORDER if d in folders]
    if root_is_package(tree) if named_only is None else named_only:
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

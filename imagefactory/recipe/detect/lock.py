"""Lock files of a pyproject.toml project: uv.lock, poetry.lock, pdm.lock. repo2docker reads none of them.

Beside the root package's pyproject.toml, the first of these is installed as locked (the recipe's
`pipfile` field names it, installed after the pip requirements and before the package itself): uv.lock
through `uv export --frozen --no-emit-project` at build time, poetry.lock and pdm.lock as their main
packages at the locked versions, read from the lock at build time (`packer/files/if_pipfile.py`). Their
versions are also exact pins for the Python inference. A Pipfile beside wins (it has its own lock).

Not installed, each with its reason: a second lock, a lock without a package pyproject.toml, pixi.lock
(conda and PyPI together: not supported yet) and conda-lock.yml (environment.yml is what is installed).
"""

from __future__ import annotations

from typing import Any

from packaging.utils import canonicalize_name

from imagefactory.documents import load_toml
from imagefactory.errors import RecipeError
from imagefactory.recipe.findings import Detection, Finding, Pin
from imagefactory.recipe.layout import root_is_package
from imagefactory.recipe.model import Environment
from imagefactory.recipe.tree import RepoTree, join

LOCKS = {
    "uv.lock": "installed as locked: exported with 'uv export --frozen --no-emit-project' at build time",
    "poetry.lock": "installed as locked: its main packages at the locked versions (read from the lock at build time)",
    "pdm.lock": "installed as locked: its default packages at the locked versions (read from the lock at build time)",
}
NOT_USED = {
    "pixi.lock": "a pixi lock (conda and PyPI packages together): not supported yet; give an environment.yml",
    "conda-lock.yml": "a conda-lock file: micromamba installs environment.yml, not the lock",
}
MAX_PINS = 300


def detect(tree: RepoTree) -> Detection:
    used: list[Finding] = []
    ignored: list[Finding] = []
    pins: tuple[Pin, ...] = ()
    chosen: str | None = None
    for place in tree.places:
        for name in LOCKS:
            rel = join(place, name)
            if not tree.has(rel):
                continue
            why = _why_not(tree, place, chosen)
            if why:
                ignored.append(Finding(rel, "lock", why))
                continue
            chosen = rel
            pins = _pins(tree, rel)
            count = f"{len(pins)} locked package" + ("" if len(pins) == 1 else "s")
            used.append(Finding(rel, "lock", f"{LOCKS[name]}; {count} (dev groups not installed)"))
        ignored += [Finding(join(place, n), "lock", why) for n, why in NOT_USED.items() if tree.has(join(place, n))]
    return Detection(used=tuple(used), ignored=tuple(ignored), pins=pins[:MAX_PINS],
                     environment=Environment(pipfile=chosen))


def _why_not(tree: RepoTree, place: str, chosen: str | None) -> str:
    if chosen:
        return f"{chosen} is installed; one lock file per recipe"
    if tree.find("Pipfile") or tree.find("Pipfile.lock"):
        return "the Pipfile (and its lock) is installed; one lock file per recipe"
    if place != "" or not root_is_package(tree):
        return "a lock without a package pyproject.toml beside it (at the repository root): nothing to install it for"
    return ""


def _pins(tree: RepoTree, rel: str) -> tuple[Pin, ...]:
    """The packages the build installs from the lock, at their locked versions: not the project's own,
    not its dev groups (the build exports without them)."""
    try:
        data = load_toml(tree.read_text(rel), rel)
    except RecipeError:
        return ()  # a lock the factory cannot read still installs (the build reads it); no pins to infer from
    packages = [p for p in data.get("package") or () if isinstance(p, dict)]
    installed = _uv_main(packages) if rel.endswith("uv.lock") else None
    pins: list[Pin] = []
    for package in packages:
        name, version = package.get("name"), package.get("version")
        if not isinstance(name, str) or not isinstance(version, str) or _local(package):
            continue
        if (canonicalize_name(name) in installed) if installed is not None else _main_group(package):
            pins.append(Pin(canonicalize_name(name), version, rel))
    return tuple(pins)


def _main_group(package: dict[str, Any]) -> bool:
    """poetry.lock (groups, or category before Poetry 1.2) and pdm.lock (groups): in the main/default group."""
    groups = package.get("groups")
    if isinstance(groups, list):
        return bool({"main", "default"} & set(groups))
    return package.get("category", "main") == "main"


def _uv_main(packages: list[dict[str, Any]]) -> set[str]:
    """The names uv.lock's main dependencies reach from the local packages (the project and its path
    dependencies), each with the extras asked of it; dev-dependencies are not followed."""
    by_name = {canonicalize_name(p["name"]): p for p in packages if isinstance(p.get("name"), str)}
    todo = [(canonicalize_name(p["name"]), ()) for p in packages if _local(p) and isinstance(p.get("name"), str)]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        name, extras = todo.pop()
        package = by_name.get(name)
        if package is None or (name, extras) in seen:
            continue
        seen.add((name, extras))
        deps = list(package.get("dependencies") or ())
        optional = package.get("optional-dependencies") or {}
        for extra in extras:
            deps += optional.get(extra) or () if isinstance(optional, dict) else ()
        for dep in deps:
            if isinstance(dep, dict) and isinstance(dep.get("name"), str):
                asked = dep.get("extra") or ()
                todo.append((canonicalize_name(dep["name"]), tuple(sorted(str(e) for e in asked))))
    return {name for name, _ in seen}


def _local(package: dict[str, Any]) -> bool:
    """The project itself or a path dependency (uv: source editable/virtual/directory/path)."""
    source = package.get("source")
    return isinstance(source, dict) and bool({"editable", "virtual", "directory", "path"} & set(source))

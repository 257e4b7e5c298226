"""Every environment-like file in the repository is accounted for: what detection neither used nor ignored
gets a reason here, so that the why-report drops nothing silently. Pure over the tree.

Environment-like (by name, anywhere in the tree, hidden folders too): requirements files and their
variants (requirements-dev.txt, dev-requirements.txt, requirements.in, constraints.txt, requirements/*.txt),
conda environment files and their variants (*environment*.yml), lock files (*.lock, conda-lock.yml),
Pipfiles, package files (setup.py, setup.cfg, pyproject.toml), repo2docker's hooks and runtime files,
Dockerfiles (Dockerfile, Dockerfile.*, *.Dockerfile), dev containers (devcontainer.json), R and Julia files.
"""

from __future__ import annotations

import re

from imagefactory.recipe.findings import Finding
from imagefactory.recipe.tree import RepoTree, parent

PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, re.IGNORECASE), k) for p, k in (
    (r"(.*[-_.])?requirements([-_.].*)?\.(txt|in|pip)|constraints([-_.].*)?\.txt", "pip-requirements"),
    (r"(.*[-_.])?environment([-_.].*)?\.ya?ml|conda[-_.]?env.*\.ya?ml|.*conda-lock\.ya?ml", "conda-env"),
    (r"Pipfile(\.lock)?", "pipfile"),
    (r".*\.lock", "lock"),
    (r"setup\.py|setup\.cfg|pyproject\.toml", "package"),
    (r"apt\.txt|postBuild|start|runtime\.txt", "binder-hook"),
    (r"Dockerfile(\..+)?|.+\.Dockerfile|Containerfile", "dockerfile"),
    (r"devcontainer\.json|\.devcontainer\.json", "devcontainer"),
    (r"install\.R|DESCRIPTION|Project\.toml|REQUIRE|renv\.lock", "r-or-julia"),
))
DEV_NAME = re.compile(r"(^|[-_.])(dev|devel|develop|test|tests|testing|docs?|lint|ci|build|extra|optional)"
                      r"([-_.]|$)", re.IGNORECASE)
OTHER_TOOLS = ("yarn.lock", "Cargo.lock", "Gemfile.lock", "composer.lock", "flake.lock", "mix.lock",
               "pubspec.lock", "Podfile.lock", "bun.lock", "pnpm-lock.yaml")


def kind(rel: str) -> str | None:
    """The family of an environment-like file (None: not one)."""
    name = rel.rsplit("/", 1)[-1]
    if parent(rel).rsplit("/", 1)[-1] == "requirements" and name.endswith((".txt", ".in")):
        return "pip-requirements"  # requirements/base.txt, requirements/dev.txt
    return next((k for pattern, k in PATTERNS if pattern.fullmatch(name)), None)


def unaccounted(tree: RepoTree, used: tuple[Finding, ...], ignored: tuple[Finding, ...]) -> tuple[Finding, ...]:
    """Ignored findings, each with its reason, for the environment-like files nobody reported."""
    seen = {f.path for f in (*used, *ignored)}
    places = tuple(tree.places)
    out: list[Finding] = []
    for rel in tree.files:
        family = kind(rel)
        if family is None or rel in seen:
            continue
        out.append(Finding(rel, family, reason(rel, family, places)))
    return tuple(out)


def reason(rel: str, family: str, places: tuple[str, ...]) -> str:
    name = rel.rsplit("/", 1)[-1]
    folder = parent(rel)
    hidden = next((p for p in folder.split("/") if p.startswith(".")), None) if folder not in places else None
    if family == "devcontainer" or hidden == ".devcontainer":
        return ("a dev container (VS Code / Codespaces) configuration: not used, a machine image is provisioned "
                "from the environment files; move what it installs to apt.txt / requirements.txt / postBuild")
    if family == "dockerfile":
        return ("a Dockerfile: not used, a machine image is provisioned by Packer on a VM, not built from a "
                "Dockerfile; move its steps to apt.txt / postBuild")
    if hidden is not None:
        return f"in a hidden folder ({hidden}/): not searched for environment files"
    if name in OTHER_TOOLS or (family == "lock" and name not in ("uv.lock", "poetry.lock", "pdm.lock", "pixi.lock")):
        return "another tool's lock file: not a Python environment"
    if folder not in places:
        chosen = ", ".join(f"{p}/" if p else "the root" for p in places)
        where = f"{folder}/" if folder else "the root"
        return f"in {where}, a folder not used (configuration taken from {chosen})"
    if family == "pip-requirements":
        if name.lower().endswith(".in"):
            return ("pip-compile's input: the requirements.txt compiled from it is what gets installed (compile it, "
                    "or add '-r " + name + "' to requirements.txt)")
        if DEV_NAME.search(name.rsplit(".", 1)[0].replace("requirements", "")):
            return (f"development/test requirements: not installed in the image (add '-r {name}' to requirements.txt "
                    "to install them)")
        return (f"a requirements variant: only requirements.txt is installed (add '-r {name}' to it, or list "
                f"{rel} under environment.pip in the recipe)")
    if family == "conda-env":
        return (f"a conda environment variant: only environment.yml (or .yaml) is installed (list {rel} under "
                "environment.conda in the recipe to use it instead)")
    return "not used by this layout"

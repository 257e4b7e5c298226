"""apt.txt: Debian/Ubuntu packages, one name per line ('#' comments allowed), installed first.

Each name must fully match the recipe's package-name pattern; anything else (two names, shell syntax)
raises `RecipeError` naming the file and the line. Names reach the build only as data, never a shell line.
"""

from __future__ import annotations

from imagefactory.errors import RecipeError
from imagefactory.recipe.findings import Detection, Finding
from imagefactory.recipe.model import APT_RE, Environment
from imagefactory.recipe.tree import RepoTree


def detect(tree: RepoTree) -> Detection:
    rel = tree.find("apt.txt")
    if rel is None:
        return Detection()
    names: list[str] = []
    for number, raw in enumerate(tree.read_text(rel).splitlines(), start=1):
        name = raw.split("#", 1)[0].strip()
        if not name:
            continue
        if not APT_RE.fullmatch(name):
            raise RecipeError(f"{rel}:{number}: {name!r} is not a Debian package name",
                              "write one package per line, e.g. libgdal-dev (no shell syntax)")
        if name not in names:
            names.append(name)
    used = (Finding(rel, "apt", f"apt packages ({len(names)})"),)
    return Detection(used=used, environment=Environment(apt=tuple(names)))

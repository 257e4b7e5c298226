"""A repository checked out for a command run in a factory home: the catalog's image names work as
specs, folders inside the factory are recorded by a portable relative path, and --name renames."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from imagefactory import catalog
from imagefactory.errors import RecipeError
from imagefactory.home import Home
from imagefactory.names import check_name
from imagefactory.repo import Checkout, resolve


def catalog_repos(home: Home) -> dict[str, str]:
    repos: dict[str, str] = {}
    for target in ("sandbox", "aws"):
        repos.update({n: e.repo for n, e in catalog.load(home.catalog_path(target)).images.items()})
    return repos


def checkout(home: Home, spec: str, *, ref: str | None, name: str | None,
             progress: Callable[[str], None]) -> Checkout:
    if name:
        check_name(name, "--name", RecipeError)  # before anything is fetched
    found = resolve(spec, ref=ref, cache_dir=home.cache_dir, catalog_repos=catalog_repos(home), progress=progress)
    if not found.is_git and found.path.is_relative_to(home.root):
        # a folder inside the factory repo (like examples/): recorded relative, so the catalog is portable
        found = replace(found, url=found.path.relative_to(home.root).as_posix())
    if name:
        found = replace(found, name=name)
    return found

"""The package index a command of a factory home asks: cached under the home's `.cache/index/`, or none
at all when IMAGEFACTORY_OFFLINE=1."""

from __future__ import annotations

import os

from imagefactory.home import Home
from imagefactory.recipe.index import PackageIndex


def for_home(home: Home) -> PackageIndex | None:
    if os.environ.get("IMAGEFACTORY_OFFLINE") == "1":
        return None
    return PackageIndex.from_environment(cache_dir=home.cache_dir / "index")

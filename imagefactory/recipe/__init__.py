"""Recipes: derive one from a repository tree, validate it, read and write it, resolve its pip part.

    tree = RepoTree.scan(Path(checkout))
    d = derive(tree, name="dhsvm-opt", source=Source(url, ref, commit), index=PackageIndex(cache_dir=...))
    print(d.report())
    write_recipe(Path("recipes/dhsvm-opt.yaml"), d.recipe)

The detection rules and install order are documented in `imagefactory.recipe.layout`,
`imagefactory.recipe.detect` and recipes/README.md.
"""

from imagefactory.recipe.derive import Derivation, derive
from imagefactory.recipe.findings import Finding
from imagefactory.recipe.index import IndexUnavailable, PackageIndex
from imagefactory.recipe.model import (
    Environment,
    ImageSpec,
    Jupyter,
    PostBuild,
    PythonSpec,
    Rebuild,
    Recipe,
    Source,
)
from imagefactory.recipe.recipefile import WriteResult, check_recipe, load_recipe, render_recipe, write_recipe
from imagefactory.recipe.tree import RepoTree

__all__ = [
    "Derivation",
    "Environment",
    "Finding",
    "ImageSpec",
    "IndexUnavailable",
    "Jupyter",
    "PackageIndex",
    "PostBuild",
    "PythonSpec",
    "Rebuild",
    "Recipe",
    "RepoTree",
    "Source",
    "WriteResult",
    "check_recipe",
    "derive",
    "load_recipe",
    "render_recipe",
    "write_recipe",
]

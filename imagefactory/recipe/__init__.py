"""Recipes: derive one from a repository tree, validate it, read and write it."""

from imagefactory.recipe.model import (
    PostBuild,
    PythonSpec,
    Recipe,
    Source,
)

__all__ = ["PostBuild", "PythonSpec", "Recipe", "Source"]

"""`recipe` (derive recipes/NAME.yaml and say why) and `recipe.check` (validate, optionally resolve)."""

from __future__ import annotations

from typing import Any

from imagefactory.cli.common import REPO_HELP, home, render, say, task
from imagefactory.result import Result


@task(name="derive", default=True, help={
    "repo": REPO_HELP,
    "ref": "Branch, tag or commit (default: the default branch)",
    "name": "Image/recipe name (default: from the repo's name)",
    "force": "Overwrite an existing recipe even if you edited it (default: show a diff, keep yours)",
    "add_missing": "Add the distributions found for the code's missing imports to environment.packages "
                   "(of your recipe if it exists; nothing else in it changes)",
    "json": "Print the derivation (recipe, used, ignored, Python and reason, imports, system packages) as JSON",
})
def derive(c: Any, repo: str, ref: str | None = None, name: str | None = None, force: bool = False,
           add_missing: bool = False, json: bool = False) -> None:
    """Derive recipes/NAME.yaml from a repo and explain what was used, ignored and why."""
    from imagefactory.recipe_commands import derive_recipe

    outcome = derive_recipe(home(), repo, ref=ref, name=name, force=force, add_missing=add_missing,
                             progress=say)
    render(Result(outcome.to_dict(), outcome.text()), json)


@task(help={
    "name": "Recipe name (recipes/NAME.yaml)",
    "resolve": "Also resolve the pip packages for the recipe's Python on linux x86_64 with uv",
    "json": "Print the result as JSON",
})
def check(c: Any, name: str, resolve: bool = False, json: bool = False) -> None:
    """Validate recipes/NAME.yaml (file, field, fix); with --resolve, check its packages resolve."""
    from imagefactory.recipe_commands import check as check_recipe

    outcome = check_recipe(home(), name, resolve=resolve, progress=say)
    render(Result(outcome.to_dict(), f"{outcome.path}: {outcome.message}"), json)

"""Setup scripts beside environment files (e.g. environment/setup.sh, binder/install.sh): recorded as
post-build steps that do NOT run (`run: false`); the report says how to turn them on. The root's shell
scripts are not considered (too often unrelated tools)."""

from __future__ import annotations

from imagefactory.recipe.findings import Detection, Finding
from imagefactory.recipe.model import Environment, PostBuild
from imagefactory.recipe.tree import RepoTree

SUFFIXES = (".sh", ".bash")


def detect(tree: RepoTree) -> Detection:
    scripts = [f for place in tree.places if place for f in tree.in_folder(place) if f.endswith(SUFFIXES)]
    if not scripts:
        return Detection()
    why = "setup script beside the environment files: recorded as a post-build step that does not run"
    used = tuple(Finding(s, "setup-script", why) for s in scripts)
    notes = tuple(f"{s} is off: to run it after the install, set 'run: true' for it under "
                  "environment.post_build in the recipe" for s in scripts)
    post_build = tuple(PostBuild(s, False) for s in scripts)
    return Detection(used=used, notes=notes, environment=Environment(post_build=post_build))

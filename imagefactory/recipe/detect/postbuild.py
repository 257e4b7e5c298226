"""postBuild and start, repo2docker's hooks. postBuild is run after everything is installed (`run: true`,
as in repo2docker; turn it off in the recipe); `start` is recorded for the launcher."""

from __future__ import annotations

from imagefactory.recipe.findings import Detection, Finding
from imagefactory.recipe.model import Environment, PostBuild
from imagefactory.recipe.tree import RepoTree


def detect(tree: RepoTree) -> Detection:
    post = tree.find("postBuild")
    start = tree.find("start")
    used: list[Finding] = []
    if post:
        used.append(Finding(post, "postBuild", "runs after the environment is installed (run: true)"))
    if start:
        used.append(Finding(start, "start", "recorded as the start script; runs before JupyterLab starts"))
    post_build = (PostBuild(post, True),) if post else ()
    return Detection(used=tuple(used), environment=Environment(post_build=post_build, start=start))

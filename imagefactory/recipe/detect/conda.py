"""environment.yml / environment.yaml: a conda environment, installed with micromamba."""

from __future__ import annotations

from imagefactory.recipe.envfile import parse_environment
from imagefactory.recipe.findings import Detection, Finding, PythonClaim
from imagefactory.recipe.model import Environment
from imagefactory.recipe.requirements import follow
from imagefactory.recipe.tree import RepoTree, join, parent

NAMES = ("environment.yml", "environment.yaml")


def detect(tree: RepoTree) -> Detection:
    rel = next((r for r in map(tree.find, NAMES) if r), None)
    if rel is None:
        return Detection()
    others = [join(parent(rel), n) for n in NAMES if join(parent(rel), n) != rel]
    reason = f"{rel} is used; only one conda environment file per folder"
    ignored = tuple(Finding(o, "conda-env", reason) for o in others if tree.has(o))
    env = parse_environment(tree.read_text(rel), rel)
    pips = follow(tree, rel, env.pip)
    what = f"conda environment ({len(env.conda)} conda packages, {pips.count} pip requirements)"
    claims = ()
    if env.python:
        claims = (PythonClaim(env.python, f"{rel} line {env.python_line}"),)
    return Detection(
        used=(Finding(rel, "conda-env", what), *pips.files), ignored=ignored, notes=pips.notes,
        environment=Environment(conda=(rel,)), python=claims, pins=pips.pins, index_urls=pips.index_urls,
    )

"""requirements.txt: pip requirements, installed with uv (pip as a fallback) from the repository root."""

from __future__ import annotations

from imagefactory.recipe.findings import Detection, Finding
from imagefactory.recipe.model import Environment
from imagefactory.recipe.requirements import follow, parse_requirements
from imagefactory.recipe.tree import RepoTree


def detect(tree: RepoTree) -> Detection:
    rel = tree.find("requirements.txt")
    if rel is None:
        return Detection()
    reqs = follow(tree, rel, parse_requirements(tree.read_text(rel), rel))
    notes = reqs.notes
    if reqs.installs_repo:
        notes += (f"{rel} installs the repository itself ('.' or '-e .'); pip runs from the repository root",)
    return Detection(
        used=(Finding(rel, "pip-requirements", f"pip requirements ({reqs.count} entries)"), *reqs.files),
        notes=notes, environment=Environment(pip=(rel,)), pins=reqs.pins, index_urls=reqs.index_urls,
    )

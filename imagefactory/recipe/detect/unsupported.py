"""Files the factory recognises but does not use yet: R (install.R, DESCRIPTION), Julia (Project.toml,
REQUIRE) and Dockerfile. Each is reported as ignored with one line saying why."""

from __future__ import annotations

from imagefactory.recipe.findings import Detection, Finding
from imagefactory.recipe.tree import RepoTree

REASONS = {
    "install.R": ("r", "R packages: not yet supported (R kernels are not installed yet)"),
    "DESCRIPTION": ("r", "R package description: not yet supported (R kernels are not installed yet)"),
    "Project.toml": ("julia", "Julia project: not yet supported (Julia kernels are not installed yet)"),
    "REQUIRE": ("julia", "Julia REQUIRE: not yet supported (Julia kernels are not installed yet)"),
    "Dockerfile": ("dockerfile", "not used: a machine image is provisioned by Packer on a VM, not built "
                                 "from a Dockerfile; move its steps to apt.txt / postBuild"),
}


def detect(tree: RepoTree) -> Detection:
    found = [(rel, *REASONS[name]) for name in REASONS if (rel := tree.find(name))]
    return Detection(ignored=tuple(Finding(rel, kind, why) for rel, kind, why in found))

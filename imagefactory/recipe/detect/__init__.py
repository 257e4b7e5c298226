"""The detectors: one module per family of configuration files, run in the order of `DETECTORS`.

The contract (`Detector`): `detect(tree) -> Detection`. `tree.places` are the folders to look in, in
order, already chosen by `imagefactory.recipe.layout` (binder/ or .binder/, else the root, plus a
sub-folder when the search found one). A detector reads only files under `tree.root`, through `tree`;
it returns what it used and ignored, each with a reason, and the recipe fields it contributes. It raises
`RecipeError` (file and line) for a malformed file. Detectors never call each other and share no state;
their order here is the order of findings in the report, not an install order (that is fixed by
`Environment`: apt, conda, pip, Pipfile, repo package, post-build).
"""

from __future__ import annotations

from typing import Protocol

from imagefactory.recipe.detect import (
    apt,
    conda,
    lock,
    package,
    pip,
    pipfile,
    postbuild,
    runtime,
    scripts,
    unsupported,
)
from imagefactory.recipe.findings import Detection
from imagefactory.recipe.tree import RepoTree


class Detector(Protocol):
    def __call__(self, tree: RepoTree) -> Detection: ...


DETECTORS: tuple[Detector, ...] = (
    runtime.detect,
    apt.detect,
    conda.detect,
    pip.detect,
    pipfile.detect,
    lock.detect,
    package.detect,
    postbuild.detect,
    scripts.detect,
    unsupported.detect,
)

__all__ = ["DETECTORS", "Detector"]

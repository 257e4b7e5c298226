"""Before anything is built: what the sandbox cannot give a recipe (its Python, the package index, conda
channels), each as one problem naming the cause and the rehearsal that would work. Pure given its probes;
`bake` turns the problems into one error (`build_machine.check_sandbox_needs`).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable

from imagefactory.recipe.model import Recipe

PYPI_URL = "https://pypi.org/simple/pip/"
CONDA_URL = "https://conda.anaconda.org/conda-forge/noarch/current_repodata.json"
MICROMAMBA_URL = "https://micro.mamba.pm/api/micromamba/linux-64/latest"

Probe = Callable[[str], bool]
Rehearse = Callable[[str], str | None]


def preflight(recipe: Recipe, *, target: str, probe: Probe | None = None,
              rehearse: Rehearse | None = None) -> list[str]:
    """Problems that would make a build fail for want of something this machine cannot give.

    Only the sandbox is checked: there the build runs here, on the rootfs's own Python, with this
    machine's network. `probe(url)` says whether a URL answers (default: a HEAD request).
    `rehearse(minor)` resolves the recipe's pins at another Python: None when they resolve, else the
    first conflict (default: not asked). Pure given `probe` and `rehearse`.
    """
    if target != "sandbox":
        return []
    from imagefactory.sandbox.base import SANDBOX_PYTHON

    probe = probe or url_answers
    env, problems = recipe.environment, []
    if env.python.version != SANDBOX_PYTHON:
        problems.append(f"the recipe wants Python {env.python.version} ({env.python.source}: {env.python.reason}) "
                        f"but the sandbox rootfs has only {SANDBOX_PYTHON}; "
                        + _rehearsal(SANDBOX_PYTHON, rehearse))
    if not probe(PYPI_URL):
        problems.append("the package index (pypi.org) does not answer from here; the sandbox build "
                        "installs uv and JupyterLab from it")
    if env.conda:
        files = ", ".join(env.conda)
        for url, what in ((CONDA_URL, "conda channels (conda.anaconda.org)"),
                          (MICROMAMBA_URL, "the micromamba download (micro.mamba.pm)")):
            if not probe(url):
                problems.append(f"the recipe installs {files} with micromamba but {what} do not answer "
                                "from here; bake for AWS, or rehearse with pip requirements instead")
    return problems


def _rehearsal(minor: str, rehearse: Rehearse | None) -> str:
    """What to offer when the sandbox lacks the recipe's Python: --python only when the pins resolve there."""
    if rehearse is None:
        return f"rehearse with --python {minor} if the pins allow it, or with --api-only"
    conflict = rehearse(minor)
    if conflict is None:
        return f"its pins resolve at {minor} too: rehearse with --python {minor}"
    return f"its pins do not resolve at {minor} ({conflict}): rehearse with --api-only, build on AWS"


def url_answers(url: str, timeout: float = 8.0) -> bool:
    """True when the server answers at all (any HTTP status); False on DNS, TCP or TLS failure."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False

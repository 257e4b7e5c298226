"""A conda environment file and a pip requirements file in one folder: one environment, or two halves?

Often they are the same environment exported twice, and installing both turns a resolvable recipe into a
conflict (an old exact pin in the pip file that the conda file does not carry). Decided from evidence:

1. the pip file is *covered* when every package it names is listed in the conda file (as a conda package
   or in its `pip:` section): the conda file alone is installed, as repo2docker does;
2. otherwise, given a resolver, the pip part is resolved at a probe Python both ways: when the union does
   not resolve while the conda file's own pip part does, the conda file alone is installed;
3. otherwise both are installed (complementary), and the report says what the pip file adds.

The dropped pip file (and what only it included) moves to the ignored files with the evidence as reason.
"""

from __future__ import annotations

import re
from dataclasses import replace

from packaging.utils import canonicalize_name

from imagefactory.recipe.envfile import parse_environment
from imagefactory.recipe.findings import Detection, Finding
from imagefactory.recipe.model import Environment
from imagefactory.recipe.pysearch import BUDGET_S, AttemptFor
from imagefactory.recipe.requirements import follow, parse_requirements
from imagefactory.recipe.tree import RepoTree, parent

CONDA_NAME = re.compile(r"(?:[^\s:]+::)?([A-Za-z0-9_.-]+)")
NOT_PACKAGES = frozenset({"python", "pip"})


def decide(found: Detection, tree: RepoTree, *, attempt_for: AttemptFor | None, probe: str) -> Detection:
    env = found.environment
    for conda_file in env.conda:
        for pip_file in [p for p in env.pip if parent(p) == parent(conda_file)]:
            found = _one(found, tree, conda_file, pip_file, attempt_for, probe)
    return found


def _one(found: Detection, tree: RepoTree, conda_file: str, pip_file: str, attempt_for: AttemptFor | None,
         probe: str) -> Detection:
    conda = parse_environment(tree.read_text(conda_file), conda_file)
    listed = {canonicalize_name(m.group(1)) for spec in conda.conda if (m := CONDA_NAME.match(spec))}
    listed |= set(follow(tree, conda_file, conda.pip).names)
    reqs = follow(tree, pip_file, parse_requirements(tree.read_text(pip_file), pip_file))
    names = [n for n in reqs.names if n not in NOT_PACKAGES]
    missing = [n for n in names if n not in listed]
    if reqs.installs_repo:
        missing.append("the repository itself ('.' or '-e .')")
    if not missing:
        return _drop(found, pip_file, reqs.files, f"covered by {conda_file}: its {len(names)} packages are all listed "
                                                  f"there (the same environment exported twice); {conda_file} alone "
                                                  "is installed, as repo2docker does")
    verdict = _resolves(found.environment, pip_file, attempt_for, probe)
    if verdict is not None and not verdict[0][0] and verdict[1][0]:
        return _drop(found, pip_file, reqs.files, f"with {conda_file} it does not resolve at Python {probe} "
                                                  f"({verdict[0][1][:300]}) while {conda_file} alone does: "
                                                  f"{conda_file} alone is installed")
    together = f" and they resolve together at Python {probe}" if verdict is not None else ""
    shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
    note = (f"{conda_file} and {pip_file} are both installed: {pip_file} adds {shown}, which {conda_file} "
            f"lacks{together}")
    return replace(found, notes=(*found.notes, note))


def _resolves(env: Environment, pip_file: str, attempt_for: AttemptFor | None,
              probe: str) -> tuple[tuple[bool, str], tuple[bool, str]] | None:
    """((union resolves, why), (conda alone resolves, why)) at `probe`; None when it cannot be asked."""
    if attempt_for is None:
        return None
    union = attempt_for(env)
    alone = attempt_for(replace(env, pip=tuple(p for p in env.pip if p != pip_file)))
    if union is None:
        return None
    first = union(probe, BUDGET_S)
    if first[0]:
        return first, first
    return first, (alone(probe, BUDGET_S) if alone is not None else (True, ""))


def _drop(found: Detection, pip_file: str, included: tuple[Finding, ...], reason: str) -> Detection:
    only_via = {f.path for f in included}
    used = tuple(f for f in found.used if f.path != pip_file and f.path not in only_via)
    dropped = (Finding(pip_file, "pip-requirements", reason),
               *(Finding(p, "pip-requirements", f"included by {pip_file}, which is not installed") for p in only_via))
    env = replace(found.environment, pip=tuple(p for p in found.environment.pip if p != pip_file))
    pins = tuple(p for p in found.pins if p.origin.rsplit(":", 1)[0] not in {pip_file, *only_via})
    return replace(found, used=used, ignored=(*found.ignored, *dropped), environment=env, pins=pins)

"""What the image's smoke test imports: the distributions the recipe's environment files name, as recipe/
parses them (requirements with their includes, conda files and their pip sections, the Pipfile or its
lock). config.json carries the result (`smoke`); the image's if_smoke_imports.py only maps each name to
its import names with the installed metadata, and never parses an environment file itself.
"""

from __future__ import annotations

from typing import Any

from packaging.utils import canonicalize_name

from imagefactory.recipe.dists import declared
from imagefactory.recipe.imports import classify, local_modules, scan
from imagefactory.recipe.model import Recipe
from imagefactory.recipe.syslibs import Table, smoke_checks
from imagefactory.recipe.tree import RepoTree

# the environment's tooling, not the repo's packages: never imported by the smoke test
NOT_IMPORTED = frozenset({"python", "pip", "setuptools", "wheel", "ipykernel", "jupyter", "jupyterlab", "notebook",
                          "nodejs", "conda", "mamba", "nb-conda-kernels", "ipywidgets"})


def smoke_packages(recipe: Recipe, tree: RepoTree) -> dict[str, list[str]]:
    """{"required": names that must import, "if_installed": conda names, imported when they installed a
    Python distribution (many conda packages are not Python)}. Canonical names, each once, in file order."""
    found = declared(recipe, tree)
    wanted = _unique(list(found.pip))
    return {"required": wanted, "if_installed": [n for n in _unique(list(found.conda)) if n not in wanted]}


def _unique(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        key = canonicalize_name(name)
        if key not in NOT_IMPORTED and key not in out:
            out.append(key)
    return out


def smoke_config(recipe: Recipe, tree: RepoTree, table: Table) -> dict[str, Any]:
    """config.json's `smoke`: `smoke_packages`, plus what proves the working environment: `modules` (the
    code's imports, as the factory classifies them for the recipe's Python; local modules are not imported,
    since importing a script runs it), each with `fail` per the recipe's `smoke.fail_on_import`; the
    `programs` and `libraries` of the recipe's system packages; the `notebooks` marked run: true."""
    policy = recipe.smoke.fail_on_import
    found = declared(recipe, tree)
    imports = classify(scan(tree), python=recipe.environment.python.version, dists=(*found.pip, *found.conda),
                       local=local_modules(tree))
    modules = [{"module": u.module, "kind": u.kind,
                "fail": policy == "all" or (policy == "provided" and u.kind == "provided")}
               for u in imports.uses if u.kind != "local"]
    return {**smoke_packages(recipe, tree), "fail_on_import": policy, "modules": modules,
            **smoke_checks(table, recipe.environment.apt),
            "notebooks": [{"path": n.path, "timeout": n.timeout} for n in recipe.smoke.notebooks if n.run]}


def proof_lines(manifest: dict[str, Any]) -> list[str]:
    """What the image's smoke test measured (the manifest's imports, system, notebooks, data), as the
    lines a bake prints after it. Pure; a manifest without them (an older image) gives none."""
    lines = []
    imports = manifest.get("imports")
    if isinstance(imports, dict):
        failed = imports.get("failed") or []
        names = ", ".join(f"{f['module']}{'' if f.get('fatal') else ' (warning)'}" for f in failed[:8])
        lines.append(f"imports: {imports.get('ok', 0)} of the code's imports work in the image"
                     + (f"; {len(failed)} failed: {names}" if failed else ""))
    system = manifest.get("system")
    if isinstance(system, dict) and (system.get("programs") or system.get("libraries")):
        found = [*(system.get("programs") or {}), *(system.get("libraries") or {})]
        lines.append(f"system: {', '.join(found)} present")
    for nb in manifest.get("notebooks") or []:
        lines.append(f"notebook: {nb['path']} {'passed' if nb['ok'] else 'FAILED'} in {nb['seconds']} s")
    for entry in manifest.get("data") or []:
        lines.append(f"data: {entry['dest']} ({entry['bytes'] / 1e6:.1f} MB from {entry['source']})")
    return lines

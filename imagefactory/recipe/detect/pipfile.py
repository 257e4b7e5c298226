"""Pipfile / Pipfile.lock: installed after the pip requirements; the lock file, when present, is what
gets installed. `[requires] python_version` (or the lock's `_meta.requires`) states the Python."""

from __future__ import annotations

import json
from typing import Any

from packaging.utils import canonicalize_name

from imagefactory.documents import load_toml
from imagefactory.errors import RecipeError
from imagefactory.recipe.findings import Detection, Finding, Pin, PythonClaim
from imagefactory.recipe.model import Environment
from imagefactory.recipe.tree import RepoTree, join, parent

RANK = 2


def detect(tree: RepoTree) -> Detection:
    pipfile = tree.find("Pipfile")
    folder = parent(pipfile) if pipfile else parent(tree.find("Pipfile.lock") or "")
    lock = join(folder, "Pipfile.lock") if tree.has(join(folder, "Pipfile.lock")) else None
    if pipfile is None and lock is None:
        return Detection()
    used: list[Finding] = []
    claims: list[PythonClaim] = []
    pins: tuple[Pin, ...] = ()
    if pipfile:
        data = _toml(tree, pipfile)
        claims += _claim(data.get("requires"), pipfile)
        pins = _pipfile_pins(data.get("packages"), pipfile)
        what = "Pipfile (its lock file is installed)" if lock else "Pipfile"
        used.append(Finding(pipfile, "pipfile", what))
    if lock:
        meta, lock_pins = _lock(tree, lock)
        claims += [] if claims else _claim(meta, lock)
        pins = lock_pins
        used.append(Finding(lock, "pipfile", "Pipfile.lock: exact versions, installed as locked"))
    return Detection(used=tuple(used), environment=Environment(pipfile=lock or pipfile), python=tuple(claims),
                     pins=pins)


def _toml(tree: RepoTree, rel: str) -> dict[str, Any]:
    return load_toml(tree.read_text(rel), rel)


def _claim(requires: Any, rel: str) -> list[PythonClaim]:
    if not isinstance(requires, dict):
        return []
    version = requires.get("python_full_version") or requires.get("python_version")
    if not isinstance(version, str) or not version.strip():
        return []
    version = version.strip()
    spec = f"=={version}.*" if version.count(".") < 2 else f"=={version}"
    return [PythonClaim(spec, f"{rel} [requires]", RANK)]


def _pipfile_pins(packages: Any, rel: str) -> tuple[Pin, ...]:
    pins: list[Pin] = []
    for name, spec in (packages or {}).items() if isinstance(packages, dict) else ():
        version = spec.get("version") if isinstance(spec, dict) else spec
        if isinstance(version, str) and version.startswith("==") and "*" not in version:
            pins.append(Pin(canonicalize_name(name), version[2:].strip(), rel))
    return tuple(pins)


def _lock(tree: RepoTree, rel: str) -> tuple[Any, tuple[Pin, ...]]:
    try:
        data = json.loads(tree.read_text(rel))
    except (ValueError, RecursionError) as exc:
        raise RecipeError(f"{rel}: not valid JSON ({str(exc)[:200]})", "regenerate it with 'pipenv lock'") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{rel}: must be a JSON object", "regenerate it with 'pipenv lock'")
    meta = (data.get("_meta") or {}).get("requires") if isinstance(data.get("_meta"), dict) else None
    return meta, _pipfile_pins(data.get("default"), rel)

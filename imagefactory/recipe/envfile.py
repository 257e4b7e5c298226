"""Read a conda environment file (environment.yml): its conda specs, its `pip:` list, its Python.

`parse_environment` validates the shape (a mapping whose `dependencies` is a list of strings and at
most one `{pip: [...]}` mapping) and raises `RecipeError` naming the file and the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from imagefactory.errors import RecipeError
from imagefactory.recipe.reqfile import ReqLine, parse_line
from imagefactory.recipe.yamlio import line_of, load_yaml

CONDA_PYTHON = re.compile(r"(?:[\w.-]+::)?python(?P<rest>(?:\s|[=<>!~]).*)?")
CONDA_SPEC = re.compile(
    r"(?:[\w.-]+::)?[A-Za-z0-9_][A-Za-z0-9_.-]*(\[[^\]]*\])?(\s*[=<>!~ ][^\s]*(\s+\S+)?)?"
)


@dataclass(frozen=True)
class CondaEnv:
    conda: tuple[str, ...]
    pip: tuple[ReqLine, ...]
    python: str | None        # PEP 440 specifier set(s) joined by '|', e.g. '==3.8.*' or '>=3.9,<3.11'
    python_line: int | None


def parse_environment(text: str, origin: str) -> CondaEnv:
    data = load_yaml(text, origin)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise RecipeError(f"{origin}:1: a conda environment file must be a mapping, not {kind}",
                          "start it with 'name:', 'channels:' and 'dependencies:' keys")
    deps = data.get("dependencies")
    if deps is None:
        return CondaEnv((), (), None, None)
    if not isinstance(deps, list):
        raise RecipeError(f"{origin}:{line_of(data, 'dependencies') or 1}: 'dependencies' must be a list",
                          "write one '- package' per line under dependencies:")
    conda: list[str] = []
    pip: list[ReqLine] = []
    python, python_line = None, None
    for i, item in enumerate(deps):
        line = line_of(deps, i) or line_of(data, "dependencies") or 1
        if isinstance(item, dict):
            pip.extend(_pip_section(item, line, origin))
            continue
        if not isinstance(item, str) or not CONDA_SPEC.fullmatch(item.strip()):
            raise RecipeError(f"{origin}:{line}: dependency {item!r} is not a conda package spec",
                              "write 'name', 'name=1.2' or 'name>=1.2'; pip packages go under '- pip:'")
        spec = conda_python_spec(item.strip())
        if spec is not None:
            python, python_line = spec, line
        conda.append(item.strip())
    return CondaEnv(tuple(conda), tuple(pip), python or None, python_line)


def _pip_section(item: dict[str, Any], line: int, origin: str) -> list[ReqLine]:
    if set(item) != {"pip"} or not isinstance(item["pip"], list):
        raise RecipeError(f"{origin}:{line}: only a '- pip:' list may appear as a mapping in dependencies",
                          "write '- pip:' followed by an indented list of pip requirements")
    out: list[ReqLine] = []
    entries = item["pip"]
    for j, entry in enumerate(entries):
        where = line_of(entries, j) or line
        if not isinstance(entry, str):
            raise RecipeError(f"{origin}:{where}: pip entry {entry!r} is not a string", "quote it")
        out.append(parse_line(entry.strip(), where, origin))
    return out


def conda_python_spec(dep: str) -> str | None:
    """The Python constraint in a conda spec as PEP 440 specifier sets joined by '|';
    '' for a bare 'python', None when `dep` is not Python."""
    match = CONDA_PYTHON.fullmatch(dep)
    if match is None:
        return None
    rest = (match.group("rest") or "").strip()
    if not rest:
        return ""
    rest = rest.split()[0] if rest[0].isdigit() else rest.replace(" ", "")
    alternatives = [_conda_to_pep440(part) for part in rest.split("|") if part]
    return "|".join(a for a in alternatives if a)


def _conda_to_pep440(part: str) -> str:
    """'=3.8' / '3.8' / '3.8.*' / '==3.8' → '==3.8.*'; '>=3.9,<3.11' unchanged; a build string dropped."""
    if part.startswith("=") and not part.startswith("=="):
        part = part[1:]
    part = part.split("=")[0] if part[0].isdigit() else part
    if part[0].isdigit() or part.startswith("=="):
        version = part.lstrip("=").rstrip(".*")
        return f"=={version}.*" if version.count(".") < 2 else f"=={version}"
    return part

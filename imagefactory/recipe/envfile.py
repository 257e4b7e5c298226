"""Read a conda environment file (environment.yml): its conda specs, its `pip:` list, its Python.

`parse_environment` validates the shape (a mapping whose `dependencies` is a list of strings and at
most one `{pip: [...]}` mapping), each conda dependency as a conda match spec (`is_match_spec`) and each
pip entry as a pip requirement line, and raises `RecipeError` naming the file, the line and the entry.
The file is read with the repository bounds of `imagefactory.documents` (size, depth, no aliases).

A match spec, as conda reads it (https://docs.conda.io/projects/conda/en/stable/user-guide/concepts/
pkg-search.html): `[channel[/subdir]::]name[ version[ build]]` or `name<op>version[=build]`, where a version
is constraints (`1.2`, `1.2.*`, `>=1.2`, `!=1.3`, `~=1.2`) joined by `,` (and) or `|` (or), and an optional
`[key=value, ...]` bracket at the end (`numpy[version='>=1.18',build=py38*]`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from imagefactory.documents import clip, line_of, load_yaml
from imagefactory.errors import RecipeError
from imagefactory.recipe.requirements import ReqLine, parse_line

CONDA_PYTHON = re.compile(r"(?:[\w.-]+::)?python(?P<rest>(?:\s|[=<>!~]).*)?")
_OP = r"(?:==|!=|<=|>=|~=|<|>|=)"
_VERSION = r"[0-9A-Za-z_.*+!]+"
_CONSTRAINT = rf"\(?{_OP}?{_VERSION}\)?"
_VSPEC = rf"{_CONSTRAINT}(?:\s*[,|]\s*{_CONSTRAINT})*"
_BUILD = r"[A-Za-z0-9_.*+]+"
_VALUE = r"""(?:'[^']*'|"[^"]*"|[^,\]'"\s]+)"""
_BRACKET = rf"\[\s*[a-z_]+\s*=\s*{_VALUE}(?:\s*,\s*[a-z_]+\s*=\s*{_VALUE})*\s*\]"
CONDA_SPEC = re.compile(
    r"(?:[^\s\[\]]+?::)?"                                   # channel[/subdir]::
    r"[A-Za-z0-9_*][A-Za-z0-9_.*-]*"                          # name
    rf"(?:\s*{_OP}\s*{_VERSION}\)?(?:\s*[,|]\s*{_CONSTRAINT})*(?:={_BUILD})?(?:\s+{_BUILD})?"  # a>=1,<2 a=1=b
    rf"|\s+{_VSPEC}(?:\s+{_BUILD})?)?"                        # name 1.2.* [build]
    rf"(?:\s*{_BRACKET})?"                                    # [key=value, ...]
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
        if not isinstance(item, str) or not is_match_spec(item):
            raise RecipeError(f"{origin}:{line}: dependency {clip(item)} is not a conda match spec",
                              "write one package per entry: 'name', 'name=1.2', 'name>=1.2,<2', 'name 1.2.* build' "
                              "or 'channel::name'; pip packages go under '- pip:'")
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
            raise RecipeError(f"{origin}:{where}: pip entry {clip(entry)} is not a string", "quote it")
        out.append(parse_line(entry.strip(), where, origin))
    return out


def is_match_spec(dep: str) -> bool:
    """Is `dep` a conda match spec (see the module docstring)? Syntax only: nothing is looked up."""
    return bool(dep.strip()) and len(dep) <= 1000 and CONDA_SPEC.fullmatch(dep.strip()) is not None


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

"""One YAML loader/dumper (ruamel.yaml round-trip mode) shared by environment files and recipes.

Round-trip mode keeps comments and key order, and gives each node its line number for error messages.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from imagefactory.errors import RecipeError


def make_yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    yaml.preserve_quotes = True
    yaml.representer.add_representer(type(None), _represent_null)
    return yaml


def _represent_null(representer: Any, _data: None) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def load_yaml(text: str, origin: str) -> Any:
    """Parse `text`; a syntax error raises RecipeError naming `origin` and the line."""
    try:
        return make_yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise RecipeError(f"{origin}{line}: YAML syntax error: {problem}",
                          "fix the indentation or quoting on that line") from None
    except YAMLError as exc:
        raise RecipeError(f"{origin}: YAML error: {str(exc).splitlines()[0]}", "fix the YAML") from None


def dump_yaml(data: Any) -> str:
    buf = io.StringIO()
    make_yaml().dump(data, buf)
    return buf.getvalue()


def line_of(node: Any, key: Any) -> int | None:
    """1-based line of a mapping key or sequence index in a round-trip node, if known."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        pos = lc.key(key) if isinstance(key, str) else lc.item(key)
    except (KeyError, IndexError, TypeError):
        return None
    return pos[0] + 1 if pos else None

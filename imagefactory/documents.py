"""Reading YAML and TOML documents with bounds, so bad input stays small; line numbers for messages.

Every YAML or TOML file the factory reads (a repository's environment.yml, Pipfile, pyproject.toml; a
recipe; the catalog) goes through `load_yaml` / `load_toml`. Both refuse a document over `limits.max_bytes`
and nested deeper than `limits.max_depth`; YAML aliases (`*name`, the "billion laughs" expansion) are
refused outright: no file the factory reads needs them. Errors are `error` (default RecipeError), one line
naming the origin and the line, and never quote more than `QUOTE_MAX` characters of the input (`clip`).

YAML is loaded in ruamel's round-trip mode: mappings and sequences keep their line numbers (`line_of`,
`line_at`), comments and key order survive a dump (`dump_yaml`).
"""

from __future__ import annotations

import io
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer, ComposerError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent

from imagefactory.errors import FactoryError, RecipeError

QUOTE_MAX = 200


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_depth: int = 64


REPO_LIMITS = Limits(max_bytes=1_000_000)      # a repository's configuration files
HOME_LIMITS = Limits(max_bytes=32_000_000)     # the factory home's recipes and catalog (grow with builds)


def clip(value: object, limit: int = QUOTE_MAX) -> str:
    """`repr(value)`, cut to `limit` characters: what an error message may quote of user input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _NoAliasComposer(Composer):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.parser.check_event(AliasEvent):
            event = self.parser.peek_event()
            raise ComposerError(None, None, f"an alias (*{str(event.anchor)[:40]}) refers back to an anchor "
                                            "(&name): anchors and aliases are not allowed here", event.start_mark)
        return super().compose_node(parent, index)


def make_yaml() -> YAML:
    """The round-trip YAML object: block style, 2-space mappings, sequences indented under their key."""
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    yaml.preserve_quotes = True
    yaml.representer.add_representer(type(None), _represent_null)
    return yaml


def _represent_null(representer: Any, _data: None) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def _check_size(text: str, origin: str, limits: Limits, error: type[FactoryError]) -> None:
    if len(text) > limits.max_bytes:
        raise error(f"{origin}: {len(text)} characters, over the limit of {limits.max_bytes} for this file",
                    "is it really a configuration file? keep it under the limit")


def load_yaml(text: str, origin: str, *, limits: Limits = REPO_LIMITS, error: type[FactoryError] = RecipeError,
              lines: bool = True) -> Any:
    """Parse `text`; too big, too deep, an alias or a syntax error raises `error`. With `lines` (the default)
    the result is round-trip data with line numbers; without, plain data from the faster safe loader."""
    _check_size(text, origin, limits, error)
    yaml = make_yaml() if lines else YAML(typ="safe", pure=True)
    yaml.Composer = _NoAliasComposer
    yaml.max_depth = limits.max_depth
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = str(exc.problem or exc.context or "invalid YAML")
        if "maximum depth" in problem:
            raise error(f"{origin}{line}: nested more than {limits.max_depth} levels deep",
                        "flatten the file") from None
        if "alias" in problem:
            raise error(f"{origin}{line}: {problem}", "write the value out instead of referring to it") from None
        raise error(f"{origin}{line}: YAML syntax error: {problem[:QUOTE_MAX]}",
                    "fix the indentation or quoting on that line") from None
    except YAMLError as exc:
        raise error(f"{origin}: YAML error: {str(exc).splitlines()[0][:QUOTE_MAX]}", "fix the YAML") from None
    except RecursionError:
        raise error(f"{origin}: nested too deeply", "flatten the file") from None


def load_toml(text: str, origin: str, *, limits: Limits = REPO_LIMITS,
              error: type[FactoryError] = RecipeError) -> dict[str, Any]:
    """Parse TOML `text`; too big, too deep or a syntax error raises `error` naming the line."""
    _check_size(text, origin, limits, error)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line = message.split("line ")[-1].split(",")[0] if "line " in message else "1"
        raise error(f"{origin}:{line}: TOML syntax error: {message[:QUOTE_MAX]}", "fix the TOML on that line") from None
    except RecursionError:
        raise error(f"{origin}: nested too deeply", "flatten the file") from None
    if _depth(data) > limits.max_depth:
        raise error(f"{origin}: nested more than {limits.max_depth} levels deep", "flatten the file")
    return data


def _depth(value: Any) -> int:
    stack, deepest = [(value, 1)], 0
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, dict):
            stack.extend((v, level + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, level + 1) for v in node)
    return deepest


def plain(node: Any) -> Any:
    """Round-trip data as plain Python: dicts, lists, str, int, float, bool, None (other scalars kept)."""
    if isinstance(node, dict):
        return {plain(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    for kind in (str, int, float):
        if isinstance(node, kind):
            return kind(node)
    return node


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
        pos = lc.key(key) if isinstance(node, dict) else lc.item(key)
    except (KeyError, IndexError, TypeError):
        return None
    return pos[0] + 1 if pos else None


def line_at(doc: Any, path: Sequence[Any]) -> int | None:
    """1-based line of the value at `path` (keys and indexes) in a round-trip document: the line of the
    deepest step that is known (the document's first line for the empty path)."""
    line = (doc.lc.line + 1) if getattr(doc, "lc", None) is not None and doc.lc.line is not None else None
    node = doc
    for step in path:
        found = line_of(node, step)
        if found is None:
            break
        line = found
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            break
    return line

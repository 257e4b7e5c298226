"""The file formats, each described once as a JSON Schema shipped with the package, and one checker.

`recipe.schema.json` describes recipes/NAME.yaml, `catalog.schema.json` describes catalog.yaml. A few
values are defined in code and filled in when a schema is loaded (`schema`), so each stays defined once:
the base images (`imagefactory.base_images`) and the image-name rule (`imagefactory.names`); everything else
(patterns, ranges, the catalog's build statuses) is defined in the schema and read from it by the code.
`check` validates a loaded document (plain or ruamel round-trip data) and raises one error naming the
file, the line (from the round-trip node), the field and the fix; semantic rules a schema cannot state (a
`latest` that names an existing build, unique build ids) stay in the code that reads each format.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from imagefactory.base_images import BASES
from imagefactory.documents import clip, line_at
from imagefactory.errors import FactoryError
from imagefactory.names import NAME_RE

NAME_PATTERN = f"^{NAME_RE.pattern}$"


def _fill_recipe(data: dict[str, Any]) -> None:
    props = data["properties"]
    props["name"]["pattern"] = NAME_PATTERN
    props["image"]["properties"]["base"]["enum"] = list(BASES)


def _fill_catalog(data: dict[str, Any]) -> None:
    data["properties"]["images"]["propertyNames"]["pattern"] = NAME_PATTERN


_FILLERS: dict[str, Callable[[dict[str, Any]], None]] = {"recipe": _fill_recipe, "catalog": _fill_catalog}


@cache
def schema(name: str) -> dict[str, Any]:  # callers must not change the answer
    """The schema `name` ("recipe", "catalog") as a mapping, with the code-defined values filled in."""
    text = resources.files(__package__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    data = json.loads(text)
    if name in _FILLERS:
        _FILLERS[name](data)
    return data


def schema_text(name: str) -> str:
    """The filled-in schema as JSON text (what the factory writes beside the recipes for editors)."""
    return json.dumps(schema(name), indent=2) + "\n"


@cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(copy.deepcopy(schema(name)), format_checker=None)


def field_path(path: Any) -> str:
    """`environment.post_build[0].path` from a jsonschema path of keys and indexes."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or "(top level)"


def check(doc: Any, name: str, origin: str, error: type[FactoryError]) -> None:
    """Raise `error` for the first schema violation in `doc` (in file order), else return."""
    errors = list(_validator(name).iter_errors(doc))
    if not errors:
        return
    first = min(errors, key=lambda e: (line_at(doc, list(e.absolute_path)) or 0, -len(e.absolute_path)))
    path, problem, fix = _explain(first)
    line = line_at(doc, path)
    where = f"{origin}:{line}" if line else origin
    raise error(f"{where}: field '{field_path(path)}' {problem}", fix)


TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "a whole number",
              "number": "a number", "boolean": "true or false", "null": "empty"}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    for kind, word in (("object", dict), ("array", list), ("string", str), ("integer", int), ("number", float)):
        if isinstance(value, word):
            return TYPE_WORDS[kind]
    return "empty" if value is None else type(value).__name__


def _explain(err: ValidationError) -> tuple[list[Any], str, str]:
    """(path of the field, what is wrong, how to fix it) for one jsonschema error."""
    path = list(err.absolute_path)
    sub = err.schema if isinstance(err.schema, dict) else {}
    described = sub.get("description", "")
    kind = err.validator
    if "propertyNames" in err.absolute_schema_path:
        return path, f"has an invalid key {clip(err.instance)}", described or "rename the key"
    if kind == "type":
        types = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        wanted = " or ".join(TYPE_WORDS.get(t, t) for t in types if t != "null")
        bounds = f" from {sub['minimum']} to {sub['maximum']}" if "minimum" in sub and "maximum" in sub else ""
        fix = f"write {wanted}{bounds}" + (f": {described}" if described else "")
        fix = described if "quoted" in described else fix
        return path, f"must be {wanted}, not {_kind(err.instance)}", fix
    if kind == "required":
        missing = next(k for k in err.validator_value if k not in err.instance)
        about = sub.get("properties", {}).get(missing, {}).get("description", "")
        return [*path, missing], "is missing", f"add it: {about}" if about else "add it"
    if kind == "additionalProperties":
        known = sub.get("properties", {})
        extra = next(k for k in err.instance if k not in known)
        return [*path, extra], "is not a field the factory knows", f"known fields here: {', '.join(known)}"
    if kind == "enum":
        return path, f"is {clip(err.instance)}", f"use one of {', '.join(map(str, err.validator_value))}"
    if kind in ("minimum", "maximum"):
        low, high = sub.get("minimum"), sub.get("maximum")
        return path, f"must be a whole number from {low} to {high}, not {clip(err.instance)}", "fix the number"
    if kind == "minLength" or (kind == "pattern" and err.validator_value == "\\S"):
        return path, "must be a non-empty string", described or "give a value"
    if kind == "maxLength":
        return path, f"is longer than {err.validator_value} characters", "shorten it"
    if kind == "pattern":
        return path, f"has an invalid value {clip(err.instance)}", described or f"match {err.validator_value}"
    if kind == "const":
        return path, f"is {clip(err.instance)}, not {err.validator_value!r}", described or "fix the value"
    return path, err.message[:200], described or "see the format's documentation"

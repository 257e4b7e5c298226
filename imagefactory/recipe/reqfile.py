"""Parse pip requirement lines (requirements.txt, or the `pip:` list of an environment.yml) without pip.

Every line must be a PEP 508 requirement, a URL/VCS/path requirement, or an option pip accepts in a
requirements file; anything else raises `RecipeError` naming the file and the line. Nothing is fetched
and no included file is read here: includes are returned for the caller to follow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from imagefactory.errors import RecipeError

VALUE_OPTIONS = {
    "-r": "requirement-file", "--requirement": "requirement-file",
    "-c": "constraint", "--constraint": "constraint",
    "-e": "editable", "--editable": "editable", "-i": "index-url", "--index-url": "index-url",
    "--extra-index-url": "extra-index-url", "-f": "find-links", "--find-links": "find-links",
    "--trusted-host": "option", "--use-feature": "option", "--only-binary": "option",
    "--no-binary": "option", "--config-settings": "option", "-C": "option", "--global-option": "option",
}
FLAG_OPTIONS = frozenset({"--no-index", "--pre", "--prefer-binary", "--require-hashes"})
PER_REQUIREMENT = ("--hash", "--global-option", "--config-settings", "-C", "--install-option")
URLISH = re.compile(r"((git|hg|svn|bzr)\+\S+|[a-zA-Z][a-zA-Z0-9+.-]*://\S+|\.{1,2}(/\S*)?|/\S+|\S+\.(whl|zip|tar\.gz))")
CONDA_LIKE = re.compile(r"[A-Za-z0-9_.-]+=[^=<>!~]")


@dataclass(frozen=True)
class ReqLine:
    """One logical line: `kind` is requirement|url|editable|requirement-file|constraint|index-url|
    extra-index-url|find-links|option; `value` is the requirement text or the option's value."""

    line: int
    kind: str
    value: str
    name: str | None = None
    pin: str | None = None


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) per logical line: comments dropped, `\\` continuations joined."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not buf:
            start = number
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            out.append((start, buf.strip()))
        buf = ""
    if buf.strip():
        out.append((start, buf.strip()))
    return out


def parse_requirements(text: str, origin: str) -> tuple[ReqLine, ...]:
    return tuple(parse_line(line, number, origin) for number, line in logical_lines(text))


def parse_line(line: str, number: int, origin: str) -> ReqLine:
    if line.startswith("-"):
        return _option(line, number, origin)
    return parse_requirement(line, number, origin)


def _option(line: str, number: int, origin: str) -> ReqLine:
    opt, value = _split_option(line)
    if opt in FLAG_OPTIONS and not value:
        return ReqLine(number, "option", opt)
    kind = VALUE_OPTIONS.get(opt)
    if kind is None:
        raise RecipeError(f"{origin}:{number}: unknown option {opt!r}",
                          "pip accepts -r, -c, -e, --index-url, --extra-index-url, -f and a few more here")
    if not value:
        raise RecipeError(f"{origin}:{number}: option {opt} needs a value", f"write '{opt} VALUE'")
    if kind == "editable":
        name = _egg_name(value)
        return ReqLine(number, "editable", value, name=name)
    return ReqLine(number, kind, value)


def _split_option(line: str) -> tuple[str, str]:
    if line.startswith("--"):
        head, _, rest = line.partition("=") if "=" in line.split()[0] else line.partition(" ")
        return head.strip(), rest.strip()
    head = line[:2]
    return head, line[2:].lstrip(" =")


def parse_requirement(line: str, number: int, origin: str) -> ReqLine:
    text = _strip_per_requirement_options(line)
    if "${" in text:
        return ReqLine(number, "requirement", text)
    if URLISH.fullmatch(text.split(";")[0].strip()):
        return ReqLine(number, "url", text, name=_egg_name(text))
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        hint = "write a PEP 508 requirement such as 'numpy==1.18.1' or 'pandas>=1.0'"
        if CONDA_LIKE.match(text):
            hint = "this looks like a conda spec (single '='): use '==' or move it to environment.yml"
        reason = str(exc).splitlines()[0].rstrip(" :")
        raise RecipeError(f"{origin}:{number}: not a valid requirement {text!r}: {reason}", hint) from None
    name = canonicalize_name(req.name)
    if req.url:
        return ReqLine(number, "url", text, name=name)
    specs = list(req.specifier)
    pin = None
    exact = len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version
    if exact and not req.marker:
        pin = specs[0].version
    return ReqLine(number, "requirement", text, name=name, pin=pin)


def _strip_per_requirement_options(line: str) -> str:
    tokens = line.split()
    for i, token in enumerate(tokens):
        if i and token.startswith(PER_REQUIREMENT):
            return " ".join(tokens[:i])
    return line


def _egg_name(value: str) -> str | None:
    match = re.search(r"[#&]egg=([A-Za-z0-9_.-]+)", value)
    if match:
        return str(canonicalize_name(match.group(1)))
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9_.-]*)\s*@", value)
    return str(canonicalize_name(match.group(1))) if match else None


def installs_repo(lines: tuple[ReqLine, ...]) -> bool:
    """True if a line installs the repository itself ('.' or '-e .')."""
    return any(r.kind in ("url", "editable") and r.value.split("[")[0].rstrip("/") in (".", "./")
               for r in lines)

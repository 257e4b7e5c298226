"""pip requirement files (requirements.txt, or the `pip:` list of an environment.yml), read without pip.

`parse_requirements` checks every line: a PEP 508 requirement, a URL/VCS/path requirement, or an option
pip accepts in a requirements file; anything else raises `RecipeError` naming the file and the line.
`follow` then walks a file's `-r`/`-c` includes inside the repository (paths relative to the including
file's folder, as pip reads them) and collects what they say; an include that is missing or leaves the
repository raises `RecipeError` naming the including file and line; a remote (http) include is left to
pip and noted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from imagefactory.documents import clip
from imagefactory.errors import RecipeError
from imagefactory.recipe.findings import Finding, Pin
from imagefactory.recipe.tree import RepoTree, normalize, parent

MAX_INCLUDES = 50

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
        raise RecipeError(f"{origin}:{number}: unknown option {clip(opt)}",
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
        raise RecipeError(f"{origin}:{number}: not a valid requirement {clip(text)}: {reason[:200]}", hint) from None
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



@dataclass(frozen=True)
class ReqSet:
    """Everything a requirements file (and its includes) says, flattened."""

    files: tuple[Finding, ...]   # the included/constraint files, as used findings
    pins: tuple[Pin, ...]
    names: tuple[str, ...]       # every named requirement (normalized), pinned or not
    index_urls: tuple[str, ...]
    count: int                   # requirements (not options) across all files
    installs_repo: bool
    notes: tuple[str, ...]


def follow(tree: RepoTree, rel: str, lines: tuple[ReqLine, ...]) -> ReqSet:
    """Walk the includes of `rel` (already parsed as `lines`), depth first, each file once."""
    state = _Walk(tree)
    state.visit(rel, lines, constraint=False)
    return ReqSet(tuple(state.files), tuple(state.pins), tuple(state.names), tuple(state.index_urls), state.count,
                  state.repo, tuple(state.notes))


class _Walk:
    def __init__(self, tree: RepoTree) -> None:
        self.tree = tree
        self.seen: set[str] = set()
        self.files: list[Finding] = []
        self.pins: list[Pin] = []
        self.names: list[str] = []
        self.index_urls: list[str] = []
        self.notes: list[str] = []
        self.count = 0
        self.repo = False

    def visit(self, rel: str, lines: tuple[ReqLine, ...], constraint: bool) -> None:
        self.seen.add(rel)
        if not constraint:
            self.repo = self.repo or installs_repo(lines)
        for line in lines:
            if line.kind in ("requirement-file", "constraint"):
                self.include(rel, line)
            elif line.kind == "index-url":
                self.index_urls.append(line.value)
            elif line.kind in ("requirement", "url", "editable") and not constraint:
                self.count += 1
                if line.name and line.name not in self.names:
                    self.names.append(line.name)
                if line.pin and line.name:
                    self.pins.append(Pin(line.name, line.pin, f"{rel}:{line.line}"))

    def include(self, rel: str, line: ReqLine) -> None:
        if "://" in line.value:
            scheme = line.value.split("://")[0]
            self.notes.append(f"{rel}:{line.line}: remote include {scheme}://… left to pip")
            return
        target = normalize(parent(rel), line.value)
        if target is None:
            raise RecipeError(f"{rel}:{line.line}: include {clip(line.value)} points outside the repository",
                              "keep requirement files inside the repository")
        if not self.tree.has(target):
            raise RecipeError(f"{rel}:{line.line}: included file {clip(line.value)} does not exist ({target})",
                              "fix the path; it is relative to the including file's folder")
        if target in self.seen:
            return
        if len(self.seen) >= MAX_INCLUDES:
            raise RecipeError(f"{rel}:{line.line}: more than {MAX_INCLUDES} included files", "flatten them")
        constraint = line.kind == "constraint"
        what = "constraints" if constraint else "requirements"
        self.files.append(Finding(target, "pip-requirements", f"{what} included by {rel} line {line.line}"))
        self.visit(target, parse_requirements(self.tree.read_text(target), target), constraint)

"""What a failed `uv pip compile` says failed, as one line and a hint that fits the cause. Pure.

uv's stderr (with NO_COLOR) is an `error:` line, `cause:` lines each with indented continuation lines
(lists, a build's `[stderr]`), and `hint:` lines; a terminal gets the same as a tree (`×`, `╰─▶`, `├─▶`).
Three causes are told apart:

* a conflict (`No solution found`): uv's whole first cause, its lists joined with commas;
* a source build that failed: the package uv names (`Failed to build `x==1``), else the requirements that
  would be built from source, and the build's last error line;
* a host that cannot be reached (DNS, connection refused, timed out): the requirement holding that host's
  URL, or the package index when no requirement does.

Anything else: the error and its causes, on one line. Credentials in URLs are redacted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from imagefactory.recipe.index import redact
from imagefactory.recipe.pyversions import MINORS

DEFAULT_HINT = "fix the pins or the Python version"
UNREACHABLE = re.compile(r"could not resolve host|dns error|failed to lookup address|name or service not known|"
                         r"connection refused|couldn't connect to server|failed to connect|network is unreachable|"
                         r"timed out|no route to host|tcp connect error", re.IGNORECASE)
BUILD_FAILED = re.compile(r"Failed to (?:download and )?build `([^`]+)`")
BACKEND = re.compile(r"build backend returned an error|Call to `[^`]+` failed", re.IGNORECASE)
ABI_HINT = re.compile(r"only found wheels for `([^`]+)` \(v([^)]+)\) with the following Python ABI tags: (.+)$")
URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s'\"`)]+", re.IGNORECASE)
TREE = re.compile(r"^[\s│]*(?:×|[╰├]─▶)\s*")


@dataclass(frozen=True)
class Block:
    kind: str                       # error | cause | hint
    head: str                       # the text on the block's first line
    rest: tuple[tuple[int, str], ...]  # continuation lines: (indent, text)

    def text(self) -> str:
        """The block on one line: list items (lines indented deeper than the first) joined by commas."""
        out = self.head
        base = min((i for i, _ in self.rest), default=0)
        previous_item = False
        for indent, line in self.rest:
            item = indent >= base + 3   # uv indents list items 4 deeper than the text around them
            sep = ", " if item and previous_item else " "
            out += sep + line
            previous_item = item
        return " ".join(out.split())


@dataclass(frozen=True)
class Failure:
    message: str
    hint: str


def explain(stderr: str, minor: str, requirements: tuple[str, ...]) -> Failure:
    """What failed, given uv's stderr, the Python minor and the requirement lines that were resolved."""
    blocks = parse(stderr)
    if not blocks:
        return Failure(f"uv failed for Python {minor} with no message", DEFAULT_HINT)
    everything = "\n".join(b.head + "\n" + "\n".join(t for _, t in b.rest) for b in blocks)
    causes = [b for b in blocks if b.kind != "hint"]
    hints = [b.text() for b in blocks if b.kind == "hint"]
    if any("no solution found" in b.head.lower() for b in causes):
        return _conflict(causes, hints, minor)
    unreachable = next((ln for ln in everything.splitlines() if UNREACHABLE.search(ln)), None)
    if unreachable is not None:
        return _unreachable(everything, unreachable, requirements)
    if any(BACKEND.search(b.head) for b in causes):
        return _build(causes, minor, requirements)
    return Failure(redact(" ".join(b.text() for b in causes)[:2000]), DEFAULT_HINT)


def parse(stderr: str) -> list[Block]:
    blocks: list[Block] = []
    for raw in stderr.splitlines():
        if not raw.strip():
            continue
        marker = TREE.match(raw)
        text = raw[marker.end():].strip() if marker else raw.strip()
        kind = ("error" if "×" in marker.group(0) else "cause") if marker else None
        for word in ("error", "cause", "hint"):
            if kind is None and text.startswith(f"{word}:"):
                kind, text = word, text.removeprefix(f"{word}:").strip()
        if kind is not None or not blocks:
            blocks.append(Block(kind or "error", text, ()))
            continue
        last = blocks[-1]
        indent = len(raw) - len(raw.lstrip(" │"))
        blocks[-1] = Block(last.kind, last.head, (*last.rest, (indent, text)))
    return blocks


def _conflict(causes: list[Block], hints: list[str], minor: str) -> Failure:
    first = next((b for b in causes if b.kind == "cause"), causes[0])
    message = f"does not resolve for Python {minor} on linux x86_64: {redact(first.text())}"
    for hint in hints:
        abi = ABI_HINT.search(hint)
        if abi:
            name, version, tags = abi.group(1), abi.group(2), abi.group(3)
            pythons = [m for t in re.findall(r"cp3\d+", tags) if (m := f"3.{t[3:]}") in MINORS]
            if not pythons:
                continue  # wheels only for Pythons the factory does not build: no help
            to = f" (e.g. --python {pythons[-1]})"
            return Failure(message, f"{name} {version} has wheels only for {tags.replace('`', '')}: choose one of "
                                    f"those Pythons{to}, or a version of {name} with wheels for {minor}")
    return Failure(message, DEFAULT_HINT)


def _build(causes: list[Block], minor: str, requirements: tuple[str, ...]) -> Failure:
    named = next((m.group(1) for b in causes if (m := BUILD_FAILED.search(b.head))), None)
    if named is None:
        local = [r for r in requirements if not re.match(r"[A-Za-z0-9]", r) or "://" in r or r.startswith(".")]
        named = " or ".join(f"`{r}`" for r in local) if local else "a package built from source (uv does not say which)"
        what = f"the source build of {named} failed"
    else:
        what = f"the source build of `{named}` failed"
    output = [t for b in causes for _, t in b.rest if t and t != "[stderr]" and not t.startswith("---")]
    errorish = [t for t in output if re.search(r"error|not found|no such file|missing", t, re.IGNORECASE)]
    last = (errorish or output or [""])[-1]
    detail = f": {last}" if last else ""
    package = named.split(" @ ")[0].split("==")[0].strip("`")
    return Failure(redact(f"{what} for Python {minor}{detail}"[:2000]),
                   f"pin a release of {package} that has a linux x86_64 wheel for Python {minor}, choose a Python it "
                   "has wheels for (--python), or add the system libraries its build needs to apt.txt")


def _unreachable(everything: str, line: str, requirements: tuple[str, ...]) -> Failure:
    hosts = [h for u in URL.findall(everything) if (h := urlsplit(u).hostname)]
    host = next((h for h in hosts if h in line), hosts[0] if hosts else None)
    why = " ".join(line.split()).removeprefix("fatal: ").strip()
    requirement = next((r for r in requirements if host and host in r), None)
    if requirement is not None:
        return Failure(redact(f"requirement `{requirement}` cannot be fetched: host {host} is unreachable ({why})"),
                       f"check the URL and that {host} can be reached from where you bake; or replace it with a "
                       "release from the package index (or vendor the package into the repository)")
    where = f"host {host}" if host else "a host"
    return Failure(redact(f"{where} is unreachable while resolving ({why})"),
                   "check the network and the package index URL (PIP_INDEX_URL / UV_INDEX_URL)")

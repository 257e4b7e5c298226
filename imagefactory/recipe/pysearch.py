"""Search for the Python at which the pip part resolves: candidates newest first, each tried with the
resolver (wheels required for compiled packages), within a time budget; every try is kept, with why it failed.

`search` is pure given its `attempt`; `resolving_attempt` is the real one (uv through `resolve`), whose
answers are cached per requirement contents, Python and index for a day (`cache_dir/<digest>.json`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from imagefactory.files import atomic_write
from imagefactory.recipe.index import PackageIndex
from imagefactory.recipe.model import Environment, PythonSpec, Recipe, Source
from imagefactory.recipe.tree import RepoTree

BUDGET_S = 120.0
CACHE_TTL_S = 86400.0

# minor, seconds left -> (resolves, why not: one line)
Attempt = Callable[[str, float], tuple[bool, str]]
AttemptFor = Callable[[Environment], Attempt | None]


@dataclass(frozen=True)
class Tried:
    minor: str
    ok: bool
    why: str


@dataclass(frozen=True)
class Search:
    found: str | None
    tried: tuple[Tried, ...]
    stopped: str = ""     # why the search ended before trying every candidate ("" when it did not)

    def failures(self) -> str:
        """'3.15: why; 3.14: why' for the tries that failed."""
        return "; ".join(f"{t.minor}: {t.why}" for t in self.tried if not t.ok)

    def tried_span(self) -> str:
        return ", ".join(t.minor for t in self.tried)


def search(candidates: tuple[str, ...], attempt: Attempt, *, budget_s: float = BUDGET_S,
           clock: Callable[[], float] = time.monotonic) -> Search:
    """Try `candidates` in order (newest first) until one resolves or the budget is spent."""
    started = clock()
    tried: list[Tried] = []
    for minor in candidates:
        left = budget_s - (clock() - started)
        if left <= 0:
            return Search(None, tuple(tried), f"the {budget_s:.0f} s budget was spent before {minor} was tried")
        ok, why = attempt(minor, left)
        tried.append(Tried(minor, ok, "" if ok else why))
        if ok:
            return Search(minor, tuple(tried))
    return Search(None, tuple(tried))


def resolving_attempt(env: Environment, tree: RepoTree, index: PackageIndex,
                      cache_dir: Path | None) -> Attempt | None:
    """The pip part of `env` resolved at a Python with uv (None: there is no pip part to resolve)."""
    from imagefactory.recipe.envfile import parse_environment

    if not env.pip and not any(parse_environment(tree.read_text(rel), rel).pip for rel in env.conda):
        return None  # conda packages only: uv cannot tell at which Python they install
    key = _inputs_digest(env, tree, index.url)

    def attempt(minor: str, left: float) -> tuple[bool, str]:
        from imagefactory.recipe.resolve import resolve

        cached = _cache_read(cache_dir, key, minor)
        if cached is not None:
            return cached
        probe = Recipe(name="python-search", source=Source("search", None, "search"),
                       environment=replace(env, python=PythonSpec(minor, "override", "search")))
        result = resolve(probe, tree, index=index, timeout=max(1.0, left))
        if not result.ok and result.message.startswith("uv did not finish"):
            return False, result.message  # a time-out says nothing about the Python: not cached
        answer = (result.ok, _short(result.message, minor))
        _cache_write(cache_dir, key, minor, answer)
        return answer

    return attempt


def _short(message: str, minor: str) -> str:
    return message.removeprefix(f"does not resolve for Python {minor} on linux x86_64: ")


def _inputs_digest(env: Environment, tree: RepoTree, index_url: str) -> str:
    from imagefactory.recipe.envfile import parse_environment
    from imagefactory.recipe.requirements import follow, parse_requirements

    h = hashlib.sha256(index_url.encode())
    files = list(env.pip) + list(env.conda)
    for rel in env.pip:
        files += [f.path for f in follow(tree, rel, parse_requirements(tree.read_text(rel), rel)).files]
    for rel in env.conda:
        files += [f.path for f in follow(tree, rel, parse_environment(tree.read_text(rel), rel).pip).files]
    for rel in sorted(set(files)):
        h.update(rel.encode() + b"\0" + tree.read_text(rel).encode() + b"\0")
    return h.hexdigest()[:32]


def _cache_read(cache_dir: Path | None, key: str, minor: str) -> tuple[bool, str] | None:
    if cache_dir is None:
        return None
    try:
        data = json.loads((cache_dir / f"{key}-{minor}.json").read_text())
        if time.time() - float(data["at"]) > CACHE_TTL_S:
            return None
        return bool(data["ok"]), str(data["why"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _cache_write(cache_dir: Path | None, key: str, minor: str, answer: tuple[bool, str]) -> None:
    if cache_dir is not None:
        atomic_write(cache_dir / f"{key}-{minor}.json",
                     json.dumps({"at": time.time(), "ok": answer[0], "why": answer[1]}))

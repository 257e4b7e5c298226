"""Check that a recipe's pip part resolves for its Python on linux x86_64, with uv, before any bake.

    uv pip compile REQS --python-version 3.8.20 --python-platform x86_64-manylinux_2_28 --python HOST_PY
        --only-binary <each compiled package>

`UV_PYTHON_DOWNLOADS=never` and `--python` stop uv from fetching a CPython (it stalls offline); a full
patch version is given because '3.8' means 3.8.0. A package is *compiled* when its files hold any
platform wheel (for a pin: that release's files), and must then come as a wheel; sdist-only and pure
packages may build from source. Compiled packages found only after resolving (transitive ones) that
would build from source trigger one more run with them added. The first conflict is reported in one
line. The conda part and a Pipfile are not checked here (noted in the message).
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from imagefactory.proc import MissingProgram
from imagefactory.recipe.envfile import parse_environment
from imagefactory.recipe.index import DEFAULT_INDEX, IndexUnavailable, PackageIndex, redact
from imagefactory.recipe.model import Recipe
from imagefactory.recipe.pyversions import LATEST_PATCH
from imagefactory.recipe.requirements import follow, parse_requirements
from imagefactory.recipe.tree import RepoTree, normalize, parent
from imagefactory.recipe.wheels import fits, release

PLATFORM = "x86_64-manylinux_2_28"
TIMEOUT_S = 180.0
PIN_LINE = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


@dataclass(frozen=True)
class ResolveResult:
    ok: bool
    message: str
    pins: tuple[str, ...]


def resolve(recipe: Recipe, tree: RepoTree, *, python_executable: str | None = None,
            index: PackageIndex | None = None, timeout: float = TIMEOUT_S) -> ResolveResult:
    env = recipe.environment
    minor = env.python.version
    lines, names = _inputs(recipe, tree)
    skipped = _skipped(recipe)
    if not lines:
        return ResolveResult(True, "no pip requirements to resolve" + skipped, ())
    index = index or PackageIndex.from_environment()
    compiled = _compiled(names, index)
    with tempfile.TemporaryDirectory(prefix="imagefactory-resolve-") as tmp:
        reqs = Path(tmp) / "requirements.in"
        reqs.write_text("\n".join(lines) + "\n")
        run = _Runner(reqs, tree.root, minor, python_executable or sys.executable, index, timeout)
        result = run(compiled)
        late = _built_from_source(result.pins, compiled, index, minor) if result.ok else set()
        if late:
            result = run(compiled | late)
    if result.ok:
        return ResolveResult(True, f"resolved {len(result.pins)} packages for Python {minor} on linux "
                                   f"x86_64{skipped}", result.pins)
    return result


def _inputs(recipe: Recipe, tree: RepoTree) -> tuple[list[str], dict[str, str | None]]:
    """Lines of one requirements file (absolute -r paths) and every direct requirement: name -> pin."""
    lines: list[str] = []
    names: dict[str, str | None] = {}
    for rel in recipe.environment.pip:
        reqs = follow(tree, rel, parse_requirements(tree.read_text(rel), rel))
        lines.append(f"-r {tree.root / rel}")
        _add_names(names, reqs.names, reqs.pins)
    for rel in recipe.environment.conda:
        env = parse_environment(tree.read_text(rel), rel)
        for line in env.pip:
            if line.kind in ("requirement-file", "constraint"):
                flag = "-r" if line.kind == "requirement-file" else "-c"
                lines.append(f"{flag} {tree.root / (normalize(parent(rel), line.value) or line.value)}")
            elif line.kind in ("requirement", "url"):
                lines.append(line.value)
        reqs = follow(tree, rel, env.pip)
        _add_names(names, reqs.names, reqs.pins)
    for line in recipe.environment.packages:  # environment.packages (--add-missing): resolved with the files
        lines.append(line)
        pin = PIN_LINE.fullmatch(line.strip())
        names.setdefault(canonicalize_name(re.split(r"[\[<>=!~;\s]", line.strip())[0]), pin.group(2) if pin else None)
    return lines, names


def _add_names(names: dict[str, str | None], found: tuple[str, ...], pins: tuple) -> None:
    pinned = {p.name: p.version for p in pins}
    for name in found:
        names.setdefault(name, pinned.get(name))


def _skipped(recipe: Recipe) -> str:
    env = recipe.environment
    parts = [what for what, present in (("conda packages", env.conda), ("the Pipfile", env.pipfile),
                                         ("the repository package", env.install_repo)) if present]
    return f" ({', '.join(parts)} not checked here)" if parts else ""


def _compiled(names: dict[str, str | None], index: PackageIndex) -> set[str]:
    """Names whose (pinned release's, else any) files include a platform wheel."""

    def check(item: tuple[str, str | None]) -> str | None:
        name, version = item
        try:
            files = index.files(name)
        except IndexUnavailable:
            return None
        if not files:
            return None
        if version is not None:
            rel = release(files, version)
            return name if rel is not None and rel.compiled else None
        return name if any(f.filename.endswith(".whl") and not f.filename.endswith("-any.whl")
                           for f in files) else None

    with cf.ThreadPoolExecutor(max_workers=8) as pool:
        return {n for n in pool.map(check, names.items()) if n}


def _built_from_source(pins: tuple[str, ...], compiled: set[str], index: PackageIndex, minor: str) -> set[str]:
    """Resolved compiled releases that have no wheel for `minor`: uv would build them from source."""
    todo = {m.group(1).lower(): m.group(2) for p in pins if (m := PIN_LINE.fullmatch(p))}
    todo = {n: v for n, v in todo.items() if n not in compiled}

    def check(item: tuple[str, str]) -> str | None:
        try:
            files = index.files(item[0])
        except IndexUnavailable:
            return None
        rel = release(files, item[1]) if files else None
        if rel is None or not rel.compiled:
            return None
        return None if any(fits(t, minor) for t in rel.tags) else item[0]

    with cf.ThreadPoolExecutor(max_workers=8) as pool:
        return {n for n in pool.map(check, todo.items()) if n}


@dataclass(frozen=True)
class _Runner:
    reqs: Path
    cwd: Path
    minor: str
    python: str
    index: PackageIndex
    timeout: float

    def __call__(self, only_binary: set[str]) -> ResolveResult:
        argv = [*_uv(), "pip", "compile", str(self.reqs), "--python-version", LATEST_PATCH[self.minor],
                "--python-platform", PLATFORM, "--python", self.python, "--no-header", "--no-annotate",
                "--quiet"]
        for name in sorted(only_binary):
            argv += ["--only-binary", name]
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "NO_COLOR": "1", "UV_NO_PROGRESS": "1"}
        if self.index.url != DEFAULT_INDEX:
            env["UV_DEFAULT_INDEX"] = self.index.url  # by environment, not argv: it may hold credentials
        try:
            proc = subprocess.run(argv, cwd=self.cwd, env=env, capture_output=True, text=True,
                                  timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            return ResolveResult(False, f"uv did not finish within {self.timeout:.0f} s", ())
        except FileNotFoundError:
            raise MissingProgram("uv") from None
        if proc.returncode != 0:
            return ResolveResult(False, f"does not resolve for Python {self.minor} on linux x86_64: "
                                        f"{first_conflict(proc.stderr)}", ())
        pins = tuple(line.strip() for line in proc.stdout.splitlines()
                     if line.strip() and not line.lstrip().startswith("#"))
        return ResolveResult(True, "", pins)


def _uv() -> list[str]:
    """The uv program: the one installed with imagefactory (a dependency), else one on PATH.
    Its absence is MissingProgram, never a verdict on the user's pins."""
    try:
        from uv import find_uv_bin
    except ImportError:
        found = shutil.which("uv")
    else:
        try:
            found = find_uv_bin()
        except FileNotFoundError:
            found = shutil.which("uv")
    if not found:
        raise MissingProgram("uv")
    return [found]


def first_conflict(stderr: str) -> str:
    """uv's first cause, on one line, credentials redacted."""
    lines = [ln.strip(" ×╰─▶│").strip() for ln in stderr.splitlines()]
    cause = next((ln for ln in lines if ln.startswith(("cause:", "Because"))), "")
    if not cause:
        cause = next((ln for ln in lines if ln and not ln.startswith("hint:")), "uv failed with no message")
    cause = cause.removeprefix("cause:").strip()
    return redact(" ".join(cause.split()))

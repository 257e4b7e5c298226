"""`rebuild`: bake what is stale (or the images named), several at once, and re-share what classes had.

`plan` is pure (verdicts and catalog entries in, one `Planned` bake per image out: full or incremental,
and why). `rebuild` runs the plan: each bake is `imagefactory.bake.bake` in its own process (a bake
handles Ctrl-C, SIGTERM and SIGHUP in its main thread: Packer's group cancel, the clean-up and the
`interrupted` record), at most `max_parallel` at once; the catalog update is locked, so they all land.
Progress lines come back prefixed with the image name. One image's failure never stops the others. A
signal to this process is passed to every running bake, which is then waited for. A rebuilt image whose
previous build was shared with a class is shared with it again (the class's converging share); the
previous build stays shared.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from imagefactory.bake import BakeOptions
from imagefactory.catalog import ImageEntry
from imagefactory.errors import Cancelled, FactoryError
from imagefactory.home import Home
from imagefactory.repo import URL_RE
from imagefactory.staleness import Verdict

Progress = Callable[[str], None]
STOP_WAIT_S = 720.0  # a bake's own cancel waits up to 600 s for Packer


@dataclass(frozen=True)
class Planned:
    name: str
    mode: str                      # "full" or "incremental"
    why: str
    options: BakeOptions
    previous: str | None           # the latest build before this rebuild
    classes: tuple[str, ...] = ()  # classes the previous build is shared with: shared again after

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mode": self.mode, "why": self.why, "parent": self.options.parent,
                "previous": self.previous, "reshare": list(self.classes)}


@dataclass(frozen=True)
class Outcome:
    name: str
    mode: str
    status: str                    # "available", "failed", "interrupted"
    build_id: str | None = None
    error: str | None = None
    shared: tuple[str, ...] = ()   # classes shared again
    share_errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "available" and not self.share_errors


@dataclass(frozen=True)
class RebuildReport:
    planned: tuple[Planned, ...]
    outcomes: tuple[Outcome, ...] = ()
    dry_run: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> list[str]:
        return [o.name for o in self.outcomes if not o.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "plan": [p.to_dict() for p in self.planned],
                "results": [asdict(o) for o in self.outcomes], "failed": self.failed}

    def text(self) -> str:
        if not self.planned:
            return "nothing to rebuild" + (f" ({'; '.join(self.notes)})" if self.notes else "")
        width = max(len("IMAGE"), *(len(p.name) for p in self.planned))
        if self.dry_run:
            lines = [f"{'IMAGE':<{width}}  {'MODE':<11}  WHY"]
            lines += [f"{p.name:<{width}}  {p.mode:<11}  {p.why}" for p in self.planned]
            return "\n".join(lines)
        lines = [f"{'IMAGE':<{width}}  {'MODE':<11}  {'RESULT':<11}  BUILD / ERROR"]
        for o in self.outcomes:
            detail = o.build_id or ""
            if o.error:
                detail = f"{detail} {o.error}".strip()
            if o.shared:
                detail += f" (shared again with {', '.join(o.shared)})"
            if o.share_errors:
                detail += f" (share failed: {'; '.join(o.share_errors)})"
            lines.append(f"{o.name:<{width}}  {o.mode:<11}  {o.status:<11}  {detail}")
        lines.append(f"{len(self.outcomes) - len(self.failed)} of {len(self.outcomes)} rebuilt"
                     + (f"; not rebuilt: {'; '.join(self.notes)}" if self.notes else ""))
        return "\n".join(lines)


def plan(verdicts: tuple[Verdict, ...], entries: dict[str, ImageEntry], *, home_root: Path, target: str,
         named: bool, full: bool) -> tuple[Planned, ...]:
    """One bake per image: every named image (`named`), else each stale one. Pure."""
    chosen = [v for v in verdicts if named or v.status == "stale"]
    return tuple(_planned(v, entries[v.name], home_root, target, full) for v in chosen)


def _planned(v: Verdict, entry: ImageEntry, home_root: Path, target: str, full: bool) -> Planned:
    latest = entry.latest_build()
    reasons = "; ".join(r.detail for r in v.reasons)
    if v.incremental and not full and latest is not None:
        mode, parent, why = "incremental", latest.id, f"only the commit moved ({reasons}): from build {latest.id}"
    else:
        mode, parent = "full", None
        if full:
            why = "--full given" + (f" ({reasons})" if reasons else "")
        elif v.reasons:
            why = reasons
            if v.unknown:
                why += "; and not known: " + ", ".join(u.kind for u in v.unknown)
        elif v.unknown:
            why = "named; not known: " + "; ".join(f"{u.kind}: {u.detail}" for u in v.unknown)
        else:
            why = "named (it is fresh)"
    repo = entry.repo if URL_RE.fullmatch(entry.repo) or Path(entry.repo).is_absolute() else str(home_root / entry.repo)
    opts = BakeOptions(repo=repo, ref=latest.ref if latest else None, name=entry.name, sandbox=target == "sandbox",
                       python=latest.python if latest and latest.python_override else None,
                       api_only=bool(latest is not None and not latest.provisioned), parent=parent)
    classes = tuple(sorted({s["class"] for s in latest.shares})) if latest else ()
    return Planned(entry.name, mode, why, opts, latest.id if latest else None, classes)


def rebuild(home: Home, names: tuple[str, ...], *, stale_only: bool, full: bool, max_parallel: int,
            dry_run: bool, sandbox: bool, progress: Progress) -> RebuildReport:
    from imagefactory import catalog
    from imagefactory.cloud.target import SANDBOX_NOTICE, choose_target, open_target
    from imagefactory.stale import survey

    if not names and not stale_only:
        raise FactoryError("nothing asked to rebuild", "name images (NAME[,NAME...]) or pass --stale")
    target = open_target(choose_target(sandbox=sandbox), home.emulator_dir)
    if target.sandbox:
        progress(SANDBOX_NOTICE.format(endpoint=target.endpoint, catalog=home.catalog_path("sandbox")))
    verdicts = survey(home, target, names)
    entries = catalog.load(home.catalog_path(target.kind)).images
    planned = plan(verdicts, entries, home_root=home.root, target=target.kind, named=bool(names) and not stale_only,
                   full=full)
    if names and stale_only:
        planned = tuple(p for p in planned if p.name in names)
    notes = tuple(f"{v.name}: {v.status}" for v in verdicts if v.name not in {p.name for p in planned})
    if dry_run or not planned:
        return RebuildReport(planned, dry_run=dry_run, notes=notes)
    outcomes = run_bakes(home, planned, max_parallel=max_parallel, progress=progress)
    outcomes = _recorded(catalog.load(home.catalog_path(target.kind)).images, entries, outcomes)
    outcomes = [_reshare(home, p, o, target.sandbox, progress) for p, o in zip(planned, outcomes, strict=True)]
    return RebuildReport(planned, tuple(outcomes), notes=notes)


def _recorded(after: dict[str, ImageEntry], before: dict[str, ImageEntry], outcomes: list[Outcome]) -> list[Outcome]:
    """Each failed or interrupted outcome with the id of the build its bake recorded (if it got that far)."""
    found = []
    for o in outcomes:
        if o.build_id is None and o.name in after:
            known = {b.id for b in before[o.name].builds} if o.name in before else set()
            new = [b.id for b in after[o.name].builds if b.id not in known]
            o = replace(o, build_id=new[-1]) if new else o
        found.append(o)
    return found


def _reshare(home: Home, p: Planned, o: Outcome, sandbox: bool, progress: Progress) -> Outcome:
    """Share the new build with each class the previous one was shared with (a converging share)."""
    if o.status != "available" or not p.classes:
        return o
    from imagefactory.classes.commands import share_image

    shared: list[str] = []
    errors: list[str] = []
    for name in p.classes:
        try:
            report = share_image(home, p.name, name, build=o.build_id, sandbox=sandbox, progress=progress)
        except FactoryError as exc:
            errors.append(f"{name}: {exc.message}")
            continue
        if report.failed:
            errors.append(f"{name}: failed in {', '.join(r.region for r in report.regions if r.status == 'failed')}")
        else:
            shared.append(name)
            progress(f"[{p.name}] shared build {o.build_id} with class {name}")
    return Outcome(o.name, o.mode, o.status, o.build_id, o.error, tuple(shared), tuple(errors))


# ------------------------------------------------------------------------------------- the bake processes
def run_bakes(home: Home, planned: tuple[Planned, ...], *, max_parallel: int, progress: Progress) -> list[Outcome]:
    """Bake each planned image in its own process, at most `max_parallel` at once; outcomes in plan order."""
    ctx = mp.get_context("spawn")  # a fresh interpreter: no threads or locks of this one are inherited
    messages: Any = ctx.Queue()
    waiting = list(planned)
    running: dict[str, Any] = {}
    done: dict[str, Outcome] = {}
    try:
        while waiting or running:
            while waiting and len(running) < max_parallel:
                p = waiting.pop(0)
                proc = ctx.Process(target=_bake_process, args=(str(home.root), p.name, p.options, messages),
                                   name=f"rebuild-{p.name}", daemon=False)
                proc.start()
                running[p.name] = proc
                progress(f"[{p.name}] {p.mode} bake started (pid {proc.pid}): {p.why}")
            _drain(messages, running, done, planned, progress, timeout=0.2)
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Cancelled) else signal.SIGINT
        progress(f"stopping {len(running)} running bake(s); {len(waiting)} not started")
        _stop(running, signum, messages, done, planned, progress)
        raise
    return [done[p.name] for p in planned]


def _drain(messages: Any, running: dict[str, Any], done: dict[str, Outcome], planned: tuple[Planned, ...],
           progress: Progress, *, timeout: float) -> None:
    modes = {p.name: p.mode for p in planned}
    try:
        kind, name, payload = messages.get(timeout=timeout)
    except queue.Empty:
        kind = ""
    if kind == "line":
        progress(f"[{name}] {payload}")
    elif kind == "done":
        done[name] = Outcome(name, modes[name], **payload)
    for name, proc in list(running.items()):
        if not proc.is_alive() and (name in done or messages.empty()):
            proc.join()
            running.pop(name)
            if name not in done:
                done[name] = Outcome(name, modes[name], "failed", error=f"the bake process exited with code "
                                                                        f"{proc.exitcode} without a result")


def _stop(running: dict[str, Any], signum: int, messages: Any, done: dict[str, Outcome],
          planned: tuple[Planned, ...], progress: Progress) -> None:
    """Pass the signal to every running bake and wait for each to clean up and record (further signals are
    answered, not obeyed)."""
    for proc in running.values():
        if proc.is_alive():
            os.kill(proc.pid, signum)
    deadline = time.monotonic() + STOP_WAIT_S
    while running:
        try:
            _drain(messages, running, done, planned, progress, timeout=0.2)
            if time.monotonic() > deadline:
                for name, proc in running.items():
                    progress(f"[{name}] did not stop within {STOP_WAIT_S:.0f} s; killed (see its build folder)")
                    proc.kill()
                deadline = float("inf")
        except KeyboardInterrupt:
            progress(f"still stopping {', '.join(running)}: each bake cleans up and records its build")


def _bake_process(root: str, name: str, opts: BakeOptions, messages: Any) -> None:
    """One bake, in its own process's main thread; its progress and its outcome go to `messages`."""
    from imagefactory.bake import bake

    received: list[int] = []

    def cancel(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Cancelled(signum)
        messages.put(("line", name, "still stopping: cleaning up and recording the build"))

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, cancel)
    try:
        result = bake(Home(Path(root)), opts, lambda line: messages.put(("line", name, line)))
        outcome: dict[str, Any] = {"status": "available", "build_id": result.build_id}
    except KeyboardInterrupt:
        outcome = {"status": "interrupted", "error": "interrupted"}
    except FactoryError as exc:
        status = "interrupted" if received or exc.message.startswith("interrupted") else "failed"
        outcome = {"status": status, "error": " ".join(str(exc).split())[:500]}
    except Exception as exc:  # a bug in a bake must not take the other bakes down: report it
        outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]}
    messages.put(("done", name, outcome))
    messages.close()
    messages.join_thread()

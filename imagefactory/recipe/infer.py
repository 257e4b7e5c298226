"""Infer a Python minor from exact pins: the newest minor whose wheels every compiled pin ships.

For each `name==version` pin the index lists the release's files (`wheels.release`). A compiled release
admits the minors it has linux x86_64 wheels for, cut by its requires-python; a pure or sdist-only
release admits what its requires-python allows. The fetches run in parallel with a deadline; an
unreachable index gives an `Inference` with no verdicts and a one-line note, never an exception.
"""

from __future__ import annotations

import concurrent.futures as cf
from dataclasses import dataclass

from imagefactory.recipe.findings import Pin
from imagefactory.recipe.index import IndexUnavailable, PackageIndex
from imagefactory.recipe.pyversions import MINORS, admitted, valid
from imagefactory.recipe.wheels import Release, release

DEADLINE_S = 20.0
WORKERS = 8


@dataclass(frozen=True)
class Verdict:
    pin: Pin
    compiled: bool
    minors: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.pin.name}=={self.pin.version}"


@dataclass(frozen=True)
class Inference:
    verdicts: tuple[Verdict, ...]
    notes: tuple[str, ...]

    def decided(self, allowed: tuple[str, ...], fallback: str) -> bool:
        """Do the pins decide? Yes when a compiled pin rules out a minor in `allowed`, or any pin rules
        out `fallback` (the version chosen without them); pure pins that admit it say nothing."""
        compiled = any(v.compiled and m not in v.minors for v in self.verdicts for m in allowed)
        return compiled or any(fallback not in v.minors for v in self.verdicts)

    def best(self, allowed: tuple[str, ...]) -> tuple[str, str]:
        """(minor, reason): the newest allowed minor that the most pins admit."""
        score = {m: sum(m in v.minors for v in self.verdicts) for m in allowed}
        top = max(score.values())
        minor = max((m for m in allowed if score[m] == top), key=lambda m: int(m.split(".")[1]))
        binding = [v.label for v in self.verdicts if v.compiled and minor in v.minors]
        misfits = [v.label for v in self.verdicts if minor not in v.minors]
        reason = f"inferred from exact pins: {minor} is the newest Python with linux x86_64 wheels for "
        reason += ", ".join(binding) if binding else "every compiled pin"
        if misfits:
            reason += f" (but {', '.join(misfits)} do not fit {minor})"
        return minor, reason


def infer(pins: tuple[Pin, ...], index: PackageIndex, deadline: float = DEADLINE_S) -> Inference:
    unique = list({p.name: p for p in reversed(pins)}.values())[::-1]
    if not unique:
        return Inference((), ())
    pool = cf.ThreadPoolExecutor(max_workers=WORKERS)
    futures = {pool.submit(index.files, p.name): p for p in unique}
    done, pending = cf.wait(futures, timeout=deadline)
    pool.shutdown(wait=False, cancel_futures=True)
    verdicts: list[Verdict] = []
    notes: list[str] = []
    for fut in [f for f in futures if f in done]:
        pin = futures[fut]
        try:
            files = fut.result()
        except IndexUnavailable as exc:
            return Inference((), (f"warning: package index {exc}; Python version not inferred from pins",))
        verdict = _verdict(pin, files, notes)
        if verdict is not None:
            verdicts.append(verdict)
    if pending:
        notes.append(f"warning: package index too slow; {len(pending)} pins not checked "
                     f"within {deadline:.0f} s")
    return Inference(tuple(verdicts), tuple(notes))


def _verdict(pin: Pin, files: object, notes: list[str]) -> Verdict | None:
    rel: Release | None = release(files, pin.version) if isinstance(files, tuple) else None
    if rel is None:
        notes.append(f"{pin.name}=={pin.version} ({pin.origin}) is not on the package index; "
                     "not used to infer")
        return None
    by_rp = admitted(rel.requires_python) if rel.requires_python and valid(rel.requires_python) else MINORS
    if not rel.compiled:
        return Verdict(pin, False, by_rp)
    return Verdict(pin, True, tuple(m for m in rel.minors() if m in by_rp))

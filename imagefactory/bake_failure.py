"""How a bake that does not finish ends: what it left in the cloud is removed, the catalog records what
really happened (cancelled before or after AMIs existed, what the clean-up removed), and the user gets
one line.

`what_happened` is pure; `finish_failed` does the clean-up and the record, and returns the error to
raise. Interrupts that arrive while it runs are answered, not obeyed: the record is never lost.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from imagefactory import catalog
from imagefactory.catalog import Build
from imagefactory.cloud import images
from imagefactory.cloud.target import Target
from imagefactory.errors import BakeInterrupted, CloudError, FactoryError, SandboxError
from imagefactory.packer import BuildOutcome, PackerCancelled

Progress = Callable[[str], None]
STAGES = {"setup": "setting up", "machine": "the sandbox build machine", "render": "rendering the template",
          "validate": "validating the template", "build": "Packer's build", "pack": "packing the sandbox image",
          "record": "recording the build"}
MESSAGE_MAX = 500


@dataclass(frozen=True)
class Cleanup:
    """What the sweep for this build's AMIs found: `removed` ("region:ami-…"), or why it could not look."""

    removed: tuple[str, ...] = ()
    error: str | None = None


def signal_name(exc: BaseException) -> str:
    """"Ctrl-C" for a plain KeyboardInterrupt, else the signal its `.signum` names (SIGTERM, SIGHUP)."""
    signum = getattr(exc, "signum", None)
    if signum is None or signum == signal.SIGINT:
        return "Ctrl-C"
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def unwrap(exc: BaseException) -> tuple[BaseException, BuildOutcome | None]:
    """(the failure that matters, Packer's outcome when Packer was cancelled). A Packer cancel stands for
    its cause; an error raised by a clean-up step (e.g. deleting the key pair from a dead emulator) stands
    for the failure it hid."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, PackerCancelled):
            return seen.cause, seen.outcome
        if isinstance(seen, FactoryError | KeyboardInterrupt):
            return seen, None
        seen = seen.__context__
    return exc, None


def what_happened(cause: BaseException, outcome: BuildOutcome | None, *, stage: str | None,
                  cleanup: Cleanup) -> tuple[str, str]:
    """(status, message) for the catalog: "interrupted" for Ctrl-C and signals, else "failed". Pure."""
    if isinstance(cause, KeyboardInterrupt | BakeInterrupted):
        status, head = "interrupted", f"cancelled by {signal_name(cause)}"
    else:
        status = "failed"
        head = cause.message if isinstance(cause, FactoryError) else f"{type(cause).__name__}: {cause}"
    parts = [head]
    if status == "interrupted" or outcome is not None:
        step = f"Packer's step {outcome.last_step!r}" if outcome and outcome.last_step else None
        if status == "interrupted" and (where := step or STAGES.get(stage or "")):
            parts[0] += f" during {where}"
        elif step:
            parts.append(f"cancelled Packer during {step}")
        created = outcome.created if outcome else []
        if cleanup.removed:
            parts.append(f"AMIs had been created: the clean-up deregistered {', '.join(cleanup.removed)} "
                         "and their snapshots")
        elif cleanup.error:
            made = f"Packer had created {', '.join(created)}; " if created else ""
            parts.append(f"{made}could not check for AMIs of this build: {cleanup.error}")
        elif created:
            parts.append(f"Packer had created {', '.join(created)} and removed it while cancelling; "
                         "no AMI of this build remains")
        else:
            parts.append("no AMI had been created (none of this build exists)")
        if outcome is not None and outcome.killed:
            parts.append("Packer did not stop in time and was killed: its build instance, key pair and "
                         "security group (named packer_*) may be left in the build region")
    elif cleanup.removed:
        parts.append(f"the clean-up deregistered {', '.join(cleanup.removed)} and their snapshots")
    elif cleanup.error:
        parts.append(f"could not check for AMIs of this build: {cleanup.error}")
    return status, "; ".join(parts)[:MESSAGE_MAX]


def connection_error(exc: BaseException, target: Target, emulator_dir: Path) -> FactoryError | None:
    """A botocore EndpointConnectionError as one line: the emulator is gone, or AWS is out of reach."""
    if type(exc).__name__ != "EndpointConnectionError" or not type(exc).__module__.startswith("botocore"):
        return None
    if target.sandbox:
        return SandboxError(f"the sandbox emulator at {target.endpoint} does not answer ({exc})",
                            f"see {emulator_dir / 'server.log'}; 'invoke sandbox.up' starts it again, then bake again")
    return CloudError(f"cannot reach AWS: {exc}", "check your network connection and proxy settings, then bake again")


def emulator_watch(emulator_dir: Path) -> Callable[[], FactoryError | None]:
    """An `abort` check for Packer's build: an error once the sandbox emulator running now has stopped."""
    from imagefactory.sandbox.emulator import status

    running = status(emulator_dir)
    pid = running.pid if running else None

    def stopped() -> FactoryError | None:
        now = status(emulator_dir)
        if now is not None and now.pid == pid:
            return None
        return SandboxError(f"the sandbox emulator (pid {pid}) stopped during the build; Packer was cancelled "
                            "and the build recorded as failed",
                            f"see {emulator_dir / 'server.log'}; 'invoke sandbox.up' starts it again, then bake again")

    return stopped


def finish_failed(target: Target, regions: tuple[str, ...], build: Build, entry: dict[str, str], cat_path: Path,
                  exc: BaseException, *, stage: str | None, emulator_dir: Path, progress: Progress) -> BaseException:
    """Sweep this build's AMIs, record the build as failed/interrupted; return the one error to raise."""
    cause, outcome = unwrap(exc)
    cause = connection_error(cause, target, emulator_dir) or cause
    with answered_interrupts(progress):
        cleanup = _sweep(target, regions, build.id, emulator_dir, progress)
        status, message = what_happened(cause, outcome, stage=stage, cleanup=cleanup)
        catalog.update(cat_path, lambda c: catalog.record(c, build=replace(build, status=status, error=message),
                                                          **entry))
    progress(f"recorded {status} build {build.id} in {cat_path}")
    if status == "interrupted":
        return BakeInterrupted(f"interrupted: {message}", f"recorded in {cat_path}")
    return cause


def _sweep(target: Target, regions: tuple[str, ...], build_id: str, emulator_dir: Path,
           progress: Progress) -> Cleanup:
    if target.sandbox:
        from imagefactory.sandbox.emulator import status

        if status(emulator_dir) is None:
            return Cleanup(error="the sandbox emulator is not running")
    try:
        return Cleanup(removed=tuple(images.sweep_build(target, regions, build_id, progress)))
    except Exception as sweep_exc:  # report, but never hide the original failure
        why = f"{type(sweep_exc).__name__}: {sweep_exc}"[:200]
        progress(f"cleanup: could not check for leftovers of {build_id}: {why}")
        return Cleanup(error=why)


@contextmanager
def answered_interrupts(progress: Progress) -> Iterator[None]:
    """While the clean-up and the record run, Ctrl-C, SIGTERM and SIGHUP print a line instead of stopping
    them (main thread only; elsewhere signals do not reach Python code anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def answer(signum: int, frame: FrameType | None) -> None:
        progress("still cleaning up and recording the build; it takes a few seconds")

    signals = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    previous = {s: signal.signal(s, answer) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

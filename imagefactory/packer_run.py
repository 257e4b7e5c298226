"""Supervise one long-running Packer process: its output read by a thread (so every wait has a deadline),
cancellation of its whole process group, and nothing of it left running afterwards.

Packer 1.6.6 runs as a wrapper whose child does the work and never receives a signal sent to the wrapper
alone; it and its plugins share the process group Packer leads (it is started in its own session), so a
SIGINT to the group cancels the build within seconds, and a SIGKILL to the group ends every part of it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

from imagefactory.errors import FactoryError
from imagefactory.waiting import WaitTimeout, wait_for

WATCH_EVERY = 1.0  # seconds between `abort` checks while Packer runs
_EOF = None


class Supervised:
    """`with Supervised(argv, cwd, env, on_line) as proc:` runs argv in its own session, stdout and
    stderr merged, each output line handed to `on_line` in the calling thread."""

    def __init__(self, argv: list[str], cwd: Path, env: Mapping[str, str], on_line: Callable[[str], None]) -> None:
        self.argv, self.cwd, self.env, self.on_line = argv, cwd, dict(env), on_line
        self.proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None
        self._eof = False

    def __enter__(self) -> Supervised:
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True,
                                        name=f"output of {Path(self.argv[0]).name}")
        self._reader.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """On every path: whatever is left of the process group is killed and the process reaped."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.signal(signal.SIGKILL)
        self.proc.wait()
        self.signal(signal.SIGKILL)  # plugins or children that outlived Packer itself
        if self._reader is not None:
            self._reader.join(timeout=5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    @property
    def returncode(self) -> int | None:
        assert self.proc is not None
        return self.proc.poll()

    def _read(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self._lines.put(line)
        except (OSError, ValueError):  # the pipe was closed under us: the end, as at EOF
            pass
        finally:
            self._lines.put(_EOF)

    def _take(self, timeout: float) -> bool:
        """Hand the next line (waiting at most `timeout` s) to on_line; False once the output has ended."""
        if self._eof:
            return False
        try:
            line = self._lines.get(timeout=timeout) if timeout > 0 else self._lines.get_nowait()
        except queue.Empty:
            return True
        if line is _EOF:
            self._eof = True
            return False
        self.on_line(line)
        return True

    def _drain(self) -> None:
        while not self._eof and not self._lines.empty():
            self._take(0)

    def follow(self, abort: Callable[[], FactoryError | None] | None = None) -> FactoryError | None:
        """Follow the output until the process ends (None), or until `abort()` returns an error (that error;
        the process still runs). A KeyboardInterrupt propagates, the process still running."""
        assert self.proc is not None
        next_watch = time.monotonic() + WATCH_EVERY
        while self._take(WATCH_EVERY):
            if abort is not None and time.monotonic() >= next_watch:
                next_watch = time.monotonic() + WATCH_EVERY
                reason = abort()
                if reason is not None:
                    return reason
        if abort is not None and self.proc.wait() != 0:  # the process may have failed *because* of it
            return abort()
        self.proc.wait()
        return None

    def signal(self, signum: int) -> None:
        """Send `signum` to the process's whole group (it leads its own session)."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    def cancel(self, timeout: float, progress: Callable[[str], None]) -> bool:
        """SIGINT to the group, then follow the output until the process exits, at most `timeout` s (more
        Ctrl-Cs meanwhile are answered, not obeyed); past that, SIGKILL the group. True if it stopped by
        itself."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            self._drain()
            return True
        progress(f"cancelling: asked Packer to stop and delete what it created (at most {timeout:.0f} s)...")
        self.signal(signal.SIGINT)
        deadline = time.monotonic() + timeout

        def stopped() -> bool:
            self._drain()
            return self.proc is not None and self.proc.poll() is not None

        while True:
            try:
                wait_for(stopped, timeout=max(deadline - time.monotonic(), 0.0), interval=0.2,
                         what="Packer to cancel")
                self._drain()
                return True
            except KeyboardInterrupt:
                progress(f"still cancelling: Packer is deleting what it created; waiting at most "
                         f"{max(deadline - time.monotonic(), 0):.0f} s more")
            except WaitTimeout:
                self.signal(signal.SIGKILL)
                self.proc.wait()
                progress(f"Packer did not stop within {timeout:.0f} s and was killed: its build instance, key "
                         "pair and security group (named packer_*) may be left in the build region")
                return False

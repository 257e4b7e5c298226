"""The program's edge, the one place where what a task raised becomes what a person sees:

* `FactoryError` -> `error: <message> (<hint>)` on one line (a quoted tool's output too), exit code 1,
  no traceback;
* SIGINT, SIGTERM and SIGHUP -> `errors.Cancelled`, a KeyboardInterrupt raised in the main thread, so every
  Ctrl-C clean-up path runs for all three; exit code 128 + the signal (130, 143, 129);
* `TASK --help` -> the task's help page (see `imagefactory.cli.parsing`).

Every task is an `EdgeTask` (made with `task` below), so this holds under whichever program runs the
collection: the stock `invoke` binary loading the root tasks.py, or the `imagefactory` console script.
(invoke's Program and Executor are chosen by the program or its config files, not by the collection.)
"""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from invoke import Exit, Task
from invoke import task as invoke_task
from invoke.parser import Argument

from imagefactory.cli.parsing import HELP, help_page, with_help_flag
from imagefactory.errors import BakeInterrupted, Cancelled, FactoryError

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class EdgeTask(Task):  # type: ignore[type-arg]
    full_name = ""   # the dotted name (`catalog.show`), set when the collection is assembled

    def __init__(self, *args: Any, positional_unless: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._help_texts = dict(self.help)   # invoke consumes `help` while building arguments
        self._instead = dict(positional_unless or {})  # positional -> the option that stands in for it

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        self.help = dict(self._help_texts)
        return with_help_flag(super().get_arguments(ignore_unknown_help=ignore_unknown_help), self._instead)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.pop(HELP, False):
            binary = args[0].config.get("imagefactory_binary", "invoke")
            print(help_page(binary, self.full_name or self.name, self.body, self.get_arguments()), end="")
            return None
        with cancelling() as received:
            try:
                return super().__call__(*args, **kwargs)
            except BakeInterrupted as exc:
                raise Exit(_one_line(exc), code=128 + _first(received)) from None
            except KeyboardInterrupt as exc:
                signum = exc.signum if isinstance(exc, Cancelled) else _first(received)
                raise Exit(f"interrupted ({signal.Signals(signum).name})", code=128 + signum) from None
            except FactoryError as exc:
                raise Exit(_one_line(exc), code=1) from None


task = functools.partial(invoke_task, klass=EdgeTask)


@contextmanager
def cancelling() -> Iterator[list[int]]:
    """While inside, SIGINT/SIGTERM/SIGHUP raise `Cancelled` (main thread only); yields the signals received."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def cancel(signum: int, frame: Any) -> None:
        received.append(signum)
        raise Cancelled(signum)

    previous = {signum: signal.signal(signum, cancel) for signum in SIGNALS}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _one_line(exc: FactoryError) -> str:
    return "error: " + " ".join(str(exc).split())


def _first(received: list[int]) -> int:
    return received[0] if received else int(signal.SIGINT)

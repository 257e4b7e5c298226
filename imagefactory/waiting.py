"""The one bounded wait: poll a condition until it holds, a process it depends on dies, or time runs out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(Exception):
    """The condition did not hold in time (callers turn this into their own FactoryError)."""


def wait_for(check: Callable[[], T | None], *, timeout: float, interval: float = 0.2,
             abort: Callable[[], str | None] | None = None, what: str = "condition") -> T:
    """Call `check` until it returns a truthy value, and return that value.

    `abort` is asked between tries and stops the wait early by returning a reason (e.g. "the process
    exited"); the reason is raised as WaitTimeout too. Raises WaitTimeout after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if abort is not None and (reason := abort()):
            raise WaitTimeout(f"{what}: {reason}")
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"{what}: not within {timeout:.0f} s")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))

"""Observations are bounded: one that fails or does not answer in time is unknown, never fresh."""

from __future__ import annotations

import time

from imagefactory.observations import run_bounded
from imagefactory.proc import run


def test_each_observation_is_bounded_and_a_failure_is_an_error_not_a_value() -> None:
    jobs = {
        ("fast",): lambda: "abc",
        ("slow",): lambda: time.sleep(3) or "late",
        ("hangs",): lambda: run(["sleep", "5"], timeout=0.3),
        ("fails",): lambda: run(["git", "ls-remote", "--", "file:///nonexistent/repo"], timeout=10),
    }
    started = time.monotonic()
    found = run_bounded(jobs, lambda key: 0.5)
    assert time.monotonic() - started < 2.5
    assert found[("fast",)].value == "abc" and found[("fast",)].error is None
    assert (found[("slow",)].value, found[("slow",)].error) == (None, "no answer within 0.5 s")
    assert found[("hangs",)].error == "sleep gave no answer within 0.3 s"
    assert found[("fails",)].value is None and "git exited with code" in (found[("fails",)].error or "")

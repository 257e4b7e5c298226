"""SIGTERM (a CI time-out) and SIGHUP (a dropped ssh session) cancel like Ctrl-C: a real bake in the
sandbox, sent the signal while Packer runs, cleans up, records an interrupted build and exits 128 + N.

One bake through the stock `invoke` program, one through the console script: both run the same edge.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator

import pytest
from conftest import REPO_ROOT, MakeRepo, cli_env, interrupt_at, new_home, run_cli, stop_emulator

from imagefactory import catalog
from imagefactory.cli.edge import cancelling
from imagefactory.errors import Cancelled
from imagefactory.home import Home

CONSOLE = [sys.executable, "-c", "from imagefactory.main import program; program.run()"]
INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(REPO_ROOT)]


@pytest.fixture(scope="module")
def signal_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    h = new_home(tmp_path_factory.mktemp("signals") / "home")
    run_cli(h, "sandbox.up", check=True)
    yield h
    stop_emulator(h)


@pytest.mark.parametrize(("signum", "program"), [(signal.SIGTERM, INVOKE), (signal.SIGHUP, CONSOLE)],
                         ids=["TERM-invoke", "HUP-imagefactory"])
def test_a_signal_during_a_bake_cancels_it_like_ctrl_c(signal_home: Home, make_repo: MakeRepo, signum: int,
                                                       program: list[str]) -> None:
    name = f"sig-{signal.Signals(signum).name.lower()}"
    repo = make_repo({"requirements.txt": "six\n"}, name=name)
    env = cli_env(signal_home, AWS_POLL_DELAY_SECONDS="2")  # slow Packer's waits so the signal lands mid-build
    code, output = interrupt_at([*program, "bake", "--api-only", "--repo", repo.as_uri()], REPO_ROOT, env,
                                "Launching a source AWS instance", signum)
    assert code == 128 + signum, output
    assert "Traceback" not in output
    assert "interrupted" in output.strip().splitlines()[-1]
    (build,) = catalog.load(signal_home.catalog_path("sandbox")).images[name].builds
    assert build.status == "interrupted" and not build.amis


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_cancelling_raises_a_keyboard_interrupt_and_restores_the_handler(signum: int) -> None:
    def before(s: int, frame: object) -> None:
        raise AssertionError("the handler from before must not run inside")

    previous = signal.signal(signum, before)
    try:
        with pytest.raises(KeyboardInterrupt) as caught, cancelling() as received:
            os.kill(os.getpid(), signum)
        assert isinstance(caught.value, Cancelled) and caught.value.signum == signum
        assert received == [signum]
        assert signal.getsignal(signum) is before
    finally:
        signal.signal(signum, previous)


"""`sandbox.up`, `sandbox.status`, `sandbox.down`: the local EC2 emulator of this factory home."""

from __future__ import annotations

from typing import Any

from imagefactory.cli.common import JSON_HELP, home, render, say, task
from imagefactory.result import Result


@task(help={"json": JSON_HELP})
def up(c: Any, json: bool = False) -> None:
    """Start the local EC2 emulator (or reuse the running one) and print its endpoint."""
    from imagefactory.sandbox.emulator import ensure_up

    info = ensure_up(home().emulator_dir)
    render(_described(info, f"sandbox emulator {'reused' if info.reused else 'started'}: {info.endpoint} "
                            f"(pid {info.pid})"), json)


@task(help={"json": JSON_HELP})
def status(c: Any, json: bool = False) -> None:
    """Say whether the local EC2 emulator is running, and where."""
    from imagefactory.sandbox.emulator import status as emulator_status

    info = emulator_status(home().emulator_dir)
    if info is None:
        render(Result({"running": False}, "sandbox emulator: not running"), json)
    else:
        render(_described(info, f"sandbox emulator running: {info.endpoint} (pid {info.pid})"), json)


@task(help={"force": "End sandbox instances' and builds' processes (disks kept); remove crashed builds' leftovers",
            "json": JSON_HELP})
def down(c: Any, force: bool = False, json: bool = False) -> None:
    """Stop the local EC2 emulator (its state is kept and restored on the next start)."""
    from imagefactory.sandbox.leftovers import shut_down

    render(shut_down(home(), force=force, progress=say), json)


@task(name="publish-base", help={"version": "Ubuntu release: 22.04 or 24.04",
                                  "serial": "Canonical's build serial, YYYYMMDD[.N] (newer than the seeded ones)",
                                  "json": JSON_HELP})
def publish_base(c: Any, version: str, serial: str, json: bool = False) -> None:
    """Publish a newer Canonical Ubuntu image in every sandbox region (rehearse a base-image update)."""
    from imagefactory.sandbox.emulator import publish_base as publish

    made = publish(home().emulator_dir, version, serial)
    render(Result(made, f"published Ubuntu {version} {serial} in {len(made)} regions "
                        f"(e.g. {', '.join(f'{r}: {v[0]}' for r, v in sorted(made.items())[:2] if v)})"), json)


def _described(info: Any, text: str) -> Result:
    return Result({"running": True, "endpoint": info.endpoint, "port": info.port, "pid": info.pid,
                   "state_dir": str(info.state_dir), "reused": info.reused}, text)

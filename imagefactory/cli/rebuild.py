"""`stale` (which images are out of date, and why) and `rebuild` (bake them again, several at once)."""

from __future__ import annotations

from typing import Any

from imagefactory.cli.common import JSON_HELP, SANDBOX_HELP, csv, home, render, say, task, whole
from imagefactory.errors import FactoryError
from imagefactory.result import Result

NAMES_HELP = "Image names, comma-separated (default: every image in the catalog)"


@task(help={"names": NAMES_HELP, "sandbox": SANDBOX_HELP, "json": JSON_HELP})
def stale(c: Any, names: str | None = None, sandbox: bool = False, json: bool = False) -> None:
    """Say which images are stale and every reason why (commit, recipe, base image, contract, packages, age)."""
    from imagefactory.stale import stale as survey

    report = survey(home(), csv(names) or (), sandbox=sandbox, progress=say)
    render(Result(report.to_dict(), report.text()), json)


@task(positional=["names"], positional_unless={"names": "stale"}, help={
    "names": "Image names to rebuild, comma-separated (or --stale)",
    "stale": "Rebuild every stale image (with NAMES: those of them that are stale)",
    "max_parallel": "Bakes at once, 1 to 16 (default 2)",
    "full": "Always a full bake, never an incremental one",
    "dry_run": "Print the plan (per image: full or incremental, and why) and bake nothing",
    "sandbox": SANDBOX_HELP,
    "json": JSON_HELP,
})
def rebuild(c: Any, names: str | None = None, stale: bool = False, max_parallel: str | None = None,
            full: bool = False, dry_run: bool = False, sandbox: bool = False, json: bool = False) -> None:
    """Rebuild the named or the stale images, several at once; a summary table at the end."""
    from imagefactory.rebuild import rebuild as run_rebuild

    report = run_rebuild(home(), csv(names) or (), stale_only=stale, full=full, dry_run=dry_run, sandbox=sandbox,
                         max_parallel=whole(max_parallel, "--max-parallel", 1, 16) or 2, progress=say)
    render(Result(report.to_dict(), report.text()), json)
    if report.failed:
        raise FactoryError(f"rebuild failed for {', '.join(report.failed)}; the others are done",
                           "see each image's lines above; 'invoke catalog.show NAME' has the recorded error")

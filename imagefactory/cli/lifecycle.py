"""`prune` (retire old builds by the recipes' lifecycle rules) and `costs` (what the factory's resources cost
per month now)."""

from __future__ import annotations

from typing import Any

from imagefactory.cli.common import JSON_HELP, SANDBOX_HELP, csv, home, render, say, task, whole
from imagefactory.errors import FactoryError
from imagefactory.result import Result


@task(iterable=["name"], help={
    "name": "An image to prune (repeat, or comma-separate; default: every image in the catalog)",
    "keep": "Retire now all but the N newest builds (1 to 1000; overrides the recipe's lifecycle.keep)",
    "older_than": "Retire builds older than DAYS (0 to 3650; overrides lifecycle.delete_after_days)",
    "dry_run": "Only print the plan (the default unless --yes is given)",
    "yes": "Carry the plan out: deprecate, deregister, delete snapshots, record it in the catalog",
    "sandbox": SANDBOX_HELP,
    "json": JSON_HELP,
})
def prune(c: Any, name: list[str] | None = None, keep: str | None = None, older_than: str | None = None,
          dry_run: bool = False, yes: bool = False, sandbox: bool = False, json: bool = False) -> None:
    """Deprecate and retire old builds by each recipe's lifecycle (a dry run unless --yes)."""
    from imagefactory.prune import prune as run_prune

    names = tuple(n for given in name or () for n in csv(given) or ())
    report = run_prune(home(), names, keep=whole(keep, "--keep", 1, 1000),
                       older_than=whole(older_than, "--older-than", 0, 3650, "days"), apply=yes and not dry_run,
                       sandbox=sandbox, progress=say)
    render(Result(report.to_dict(), report.text()), json)
    if report.failed:
        where = ", ".join(sorted({f"{o.image} {o.region}" for o in report.failed}))
        raise FactoryError(f"prune failed in {where}; the rest is done and recorded",
                           "fix what the FAILED line says and run it again: it picks up where it stopped")


@task(help={"sandbox": SANDBOX_HELP, "json": JSON_HELP})
def costs(c: Any, sandbox: bool = False, json: bool = False) -> None:
    """What the factory's images cost per month now (snapshots, instances), and what prune would save."""
    from imagefactory.costs import costs as monthly

    report = monthly(home(), sandbox=sandbox, progress=say)
    render(Result(report.to_dict(), report.text()), json)

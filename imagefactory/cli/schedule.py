"""`schedule.github` (a GitHub Actions workflow) and `schedule.cron` (a crontab line or a systemd user timer):
rebuild the stale images on a scheduler. invoke names a collection's tasks with a dot, so the issue's
`schedule github` is spelled `schedule.github` (and `schedule cron`, `schedule.cron`)."""

from __future__ import annotations

from typing import Any

from imagefactory.cli.common import JSON_HELP, csv, home, render, task, whole

FORCE_HELP = "Replace a file that differs (without it, the diff is shown and nothing is changed)"


@task(name="github", help={
    "cron": 'When it runs, five cron fields in UTC (default "0 6 * * 1": Mondays 06:00)',
    "role_arn": "IAM role the workflow assumes through OIDC, arn:aws:iam::ACCOUNT:role/NAME (default: the "
                "repository variable IMAGEFACTORY_ROLE_ARN)",
    "regions": "Comma-separated regions the role bakes in; the first is the credentials' region (default: the "
               "recipes' regions)",
    "max_parallel": "Images baked at once, 1 to 20 (default 2)",
    "install": "What pip installs in the workflow: '.' (this repository, the default in the factory's own "
               "source tree) or a requirement (default imagefactory==THIS VERSION)",
    "force": FORCE_HELP,
    "json": JSON_HELP,
})
def github(c: Any, cron: str | None = None, role_arn: str | None = None, regions: str | None = None,
           max_parallel: str | None = None, install: str | None = None, force: bool = False,
           json: bool = False) -> None:
    """Write .github/workflows/imagefactory-rebuild.yml: rebuild stale images on GitHub Actions.

    The issue's `schedule github`: invoke names a collection's tasks with a dot."""
    from imagefactory.schedule_files import github as write_workflow
    from imagefactory.schedule_files import refuse_differing

    result, files = write_workflow(home(), cron=cron, role_arn=role_arn, regions=csv(regions),
                                   max_parallel=whole(max_parallel, "--max-parallel", 1, 20), install=install,
                                   force=force)
    render(result, json)
    refuse_differing(files)


@task(name="cron", help={
    "cron": 'When the crontab line runs, five cron fields (default "0 6 * * 1": Mondays 06:00)',
    "systemd": "Write a systemd user timer and service instead of printing a crontab line",
    "at": 'When the systemd timer fires, an OnCalendar expression (default "Mon *-*-* 06:00:00")',
    "unit_dir": "Folder for the systemd units (default ~/.config/systemd/user)",
    "force": FORCE_HELP,
    "json": JSON_HELP,
})
def cron(c: Any, cron: str | None = None, systemd: bool = False, at: str | None = None,
         unit_dir: str | None = None, force: bool = False, json: bool = False) -> None:
    """Rebuild stale images on a lab server: print a crontab line, or write a systemd user timer.

    The issue's `schedule cron`: invoke names a collection's tasks with a dot."""
    from pathlib import Path

    from imagefactory.schedule_files import lab, refuse_differing

    result, files = lab(home(), cron=cron, systemd=systemd, at=at, units=Path(unit_dir).resolve() if unit_dir else None,
                        force=force)
    render(result, json)
    refuse_differing(files)

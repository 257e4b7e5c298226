"""`share`, `unshare` (an image with a class) and `class.new`, `class.status`, `class.end` (its roster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagefactory.cli.common import JSON_HELP, SANDBOX_HELP, csv, home, render, say, task, whole
from imagefactory.errors import ClassError, UsageError
from imagefactory.result import Result

CLASS_HELP = "Class name: its roster is classes/NAME.yaml"


@task(name="new", help={
    "name": "Class name (the roster is written to classes/NAME.yaml)",
    "accounts_file": "CSV of student accounts, one id[,label] per row (labels stay in the roster only)",
    "regions": "Comma-separated regions students launch in (e.g. us-west-2)",
    "title": "The class's title (default: its name)",
    "start": "First day of the term, YYYY-MM-DD (default: today)",
    "weeks": "Length of the term in weeks, 1 to 104 (default 12)",
    "organization": "Share with a whole organization: arn:aws:organizations::ACCOUNT:organization/o-…",
    "ous": "Comma-separated OU ARNs: arn:aws:organizations::ACCOUNT:ou/o-…/ou-…",
    "kms_key": "Customer-managed KMS key (ARN or alias/NAME) the class's copies are encrypted with",
    "force": "Replace an existing roster of that name",
    "json": JSON_HELP,
})
def new(c: Any, name: str, regions: str, accounts_file: str | None = None, title: str | None = None,
        start: str | None = None, weeks: str | None = None, organization: str | None = None, ous: str | None = None,
        kms_key: str | None = None, force: bool = False, json: bool = False) -> None:
    """Write a class roster (classes/NAME.yaml) from a CSV of student accounts."""
    from datetime import date

    from imagefactory.classes.commands import new_class

    try:
        first = date.fromisoformat(start) if start else None
    except ValueError:
        raise UsageError(f"--start {start!r} is not a date", "give YYYY-MM-DD") from None
    data, text = new_class(home(), name, accounts_file=Path(accounts_file) if accounts_file else None,
                           regions=csv(regions) or (), title=title, start=first,
                           weeks=whole(weeks, "--weeks", 1, 104) or 12, organization=organization,
                           ous=csv(ous) or (), kms_key=kms_key, force=force)
    render(Result(data, text), json)


def _shared(image: str, class_: str, build: str | None, dry_run: bool, sandbox: bool, json: bool,
            unshare: bool) -> None:
    from imagefactory.classes.commands import share_image

    report = share_image(home(), image, class_, build=build, dry_run=dry_run, sandbox=sandbox, unshare=unshare,
                         progress=say)
    render(Result(report.to_dict(), report.text()), json)
    if report.failed:
        failed = ", ".join(r.region for r in report.regions if r.status == "failed")
        raise ClassError(f"{'unshare' if unshare else 'share'} failed in {failed}; the other regions are done",
                         "fix what the region line says and run it again: it converges")


SHARE_HELP = {"image": "Image name in the catalog", "class_": CLASS_HELP,
              "build": "Build id to share (default: the image's latest available build)",
              "dry_run": "Read and plan only: say what would change, change nothing", "sandbox": SANDBOX_HELP,
              "json": JSON_HELP}


@task(help=SHARE_HELP)
def share(c: Any, image: str, class_: str, build: str | None = None, dry_run: bool = False, sandbox: bool = False,
          json: bool = False) -> None:
    """Share an image with a class: its AMI in every class region, launch permissions converged to the roster."""
    _shared(image, class_, build, dry_run, sandbox, json, unshare=False)


@task(help=SHARE_HELP)
def unshare(c: Any, image: str, class_: str, build: str | None = None, dry_run: bool = False,
            sandbox: bool = False, json: bool = False) -> None:
    """Take back exactly what a class was given: its launch permissions, key grants and copies."""
    _shared(image, class_, build, dry_run, sandbox, json, unshare=True)


@task(name="status", help={"name": CLASS_HELP, "sandbox": SANDBOX_HELP, "json": JSON_HELP})
def class_status(c: Any, name: str, sandbox: bool = False, json: bool = False) -> None:
    """Show, per image and region, what each roster entry can launch now (read from AWS)."""
    from imagefactory.classes.commands import status

    data, text = status(home(), name, sandbox=sandbox, progress=say)
    render(Result(data, text), json)


@task(name="end", help={"name": CLASS_HELP, "force": "End it before its term is over", "sandbox": SANDBOX_HELP,
                        "json": JSON_HELP})
def end(c: Any, name: str, force: bool = False, sandbox: bool = False, json: bool = False) -> None:
    """Unshare every image of a class whose term is over."""
    from imagefactory.classes.commands import end as end_class

    reports = end_class(home(), name, sandbox=sandbox, force=force, progress=say)
    text = "\n".join(r.text() for r in reports) or f"class {name}: nothing was shared"
    render(Result([r.to_dict() for r in reports], text), json)
    if any(r.failed for r in reports):
        raise ClassError(f"class.end {name} failed in some regions", "run it again: it converges")


@task(help={"image": "Image name in the catalog", "class_": CLASS_HELP, "sandbox": SANDBOX_HELP, "json": JSON_HELP})
def handout(c: Any, image: str, class_: str, sandbox: bool = False, json: bool = False) -> None:
    """Write the students' page for a shared image: handouts/NAME/index.html and README.md."""
    from imagefactory.classes.commands import handout as write_handout

    data, text = write_handout(home(), image, class_, sandbox=sandbox, progress=say)
    render(Result(data, text), json)

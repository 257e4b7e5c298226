"""`janitor`: what the factory made and no longer accounts for (Packer's build instances, key pairs and
security groups, untracked AMIs and snapshots, a killed sandbox bake's build root), and its removal."""

from __future__ import annotations

import sys
from typing import Any

from imagefactory.cli.common import JSON_HELP, SANDBOX_HELP, confirm, csv, home, render, say, task
from imagefactory.errors import UsageError


def _ask(question: str) -> None:
    confirm(question, "nothing removed")


@task(iterable=["region"], help={
    "region": "A region to look in (repeat, or a,b; default: the catalog's, the recipes' and the default regions)",
    "delete": "Remove what was found (asks first on a terminal unless --yes)",
    "yes": "Do not ask before removing",
    "sandbox": SANDBOX_HELP,
    "json": JSON_HELP,
})
def janitor(c: Any, region: list[str] | None = None, delete: bool = False, yes: bool = False, sandbox: bool = False,
            json: bool = False) -> None:
    """Find what the factory made and no longer accounts for, with evidence and monthly cost; --delete removes it."""
    from imagefactory.janitor_run import janitor as run_janitor

    if delete and not yes and not (sys.stdin and sys.stdin.isatty()):
        raise UsageError("janitor --delete: there is no terminal to confirm on", "pass --yes to remove without asking")
    regions = tuple(r for value in region or () for r in csv(value) or ())
    render(run_janitor(home(), regions=regions, sandbox=sandbox, delete=delete, ask=None if yes else _ask,
                       progress=say), json)

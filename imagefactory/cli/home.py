"""`init`: make a factory home (the one command that needs none)."""

from __future__ import annotations

from typing import Any

from imagefactory.cli.common import JSON_HELP, render, task


@task(help={"dir": "Folder to make the factory home in, made if missing (default: $IMAGEFACTORY_HOME, else the "
                   "current folder)", "json": JSON_HELP})
def init(c: Any, dir: str | None = None, json: bool = False) -> None:
    """Make a factory home: catalog.yaml, recipes/ and a .gitignore for per-machine state; keeps what exists."""
    from pathlib import Path

    from imagefactory.home import make_home

    render(make_home(Path(dir) if dir else None), json)

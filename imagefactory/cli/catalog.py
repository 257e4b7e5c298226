"""`catalog` (every image, real and sandbox, with its latest build) and `catalog.show` (one image in full)."""

from __future__ import annotations

from typing import Any

from imagefactory.cli.common import JSON_HELP, home, render, task
from imagefactory.result import Result


@task(name="list", default=True, help={"json": JSON_HELP})
def listing(c: Any, json: bool = False) -> None:
    """List images in the catalog (real and sandbox), with their latest build and AMIs."""
    from imagefactory.catalog_view import rows, table

    items = rows(home())
    render(Result(items, table(items)), json)


@task(help={"name": "Image name", "json": "Print JSON instead of YAML"})
def show(c: Any, name: str, json: bool = False) -> None:
    """Show one image's catalog entries: every build, AMI per region, status and versions."""
    from imagefactory.catalog_view import show as show_image
    from imagefactory.catalog_view import show_yaml

    shown = show_image(home(), name)
    render(Result(shown, show_yaml(shown)), json)

"""The command line: one module per command group over `common`; every task runs through one edge (`edge`).

Each task parses its arguments, calls one library function and renders its `Result` (text or --json).
Heavy modules (boto3, moto, git, jinja2) are imported inside the tasks, so `invoke --list` stays fast.
"""

from __future__ import annotations

from invoke import Collection

from imagefactory.cli import (
    bake,
    catalog,
    classes,
    home,
    instances,
    janitor,
    lifecycle,
    rebuild,
    recipe,
    sandbox,
    schedule,
)


def _named(collection: Collection) -> Collection:
    """Tell every task its dotted name (`catalog.show`), for its help page."""
    for name in collection.task_names:
        collection[name].full_name = name
    return collection


ns = _named(Collection(
    bake.bake, home.init, rebuild.stale, rebuild.rebuild,
    instances.launch, instances.connect, instances.instances, instances.stop, instances.start, instances.terminate,
    Collection("recipe", recipe.derive, recipe.check),
    Collection("catalog", catalog.listing, catalog.show),
    Collection("sandbox", sandbox.up, sandbox.status, sandbox.down, sandbox.publish_base),
    classes.share, classes.unshare, classes.handout,
    janitor.janitor,
    Collection("class", classes.new, classes.class_status, classes.end),
    Collection("schedule", schedule.github, schedule.cron),
    lifecycle.prune, lifecycle.costs,
))

__all__ = ["ns"]

"""The one rule for image names (recipes, catalog entries, AMI name prefixes, --name).

A name is 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit: it becomes a file
name under recipes/, a catalog key, part of an AMI name and a DNS-style label, so it must be safe in all.
"""

from __future__ import annotations

import re

from imagefactory.errors import FactoryError

NAME_MAX = 63
NAME_RE = re.compile(rf"[a-z0-9][a-z0-9-]{{0,{NAME_MAX - 1}}}")
NAME_RULE = (f"an image name is 1 to {NAME_MAX} lowercase letters, digits and dashes, "
             "starting with a letter or digit")


def name_problem(name: object) -> str | None:
    """Why `name` is not a valid image name, or None when it is."""
    if not isinstance(name, str) or not name:
        return "it is empty"
    if len(name) > NAME_MAX:
        return f"it is {len(name)} characters long, over the limit of {NAME_MAX}"
    if not NAME_RE.fullmatch(name):
        return "it holds characters other than lowercase letters, digits and dashes, or starts with a dash"
    return None


def check_name(name: object, what: str = "image name", error: type[FactoryError] = FactoryError) -> str:
    """`name` if valid; else raises `error` naming `what`, the value (clipped) and the rule with its limit."""
    problem = name_problem(name)
    if problem is not None:
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
        raise error(f"{what} {shown} is not a valid image name: {problem}", NAME_RULE)
    assert isinstance(name, str)
    return name

"""What every command module shares: progress lines, the factory home, option parsing, and rendering a
`Result` once, as text or as JSON. Imports nothing heavy and nothing of the command modules.
"""

from __future__ import annotations

import sys

from imagefactory.cli.edge import task
from imagefactory.errors import HomeNotFound, UsageError
from imagefactory.home import Home, find_home
from imagefactory.result import Result

__all__ = ["JSON_HELP", "REPO_HELP", "SANDBOX_HELP", "confirm", "csv", "home", "maybe_home", "render", "say", "task",
           "whole"]

JSON_HELP = "Print the result as JSON on stdout"
REPO_HELP = "Repository: a local folder, a git URL (file://, https://, ssh), owner/name on GitHub, or a catalog image"
SANDBOX_HELP = "Use the local sandbox even if AWS credentials are configured"


def say(line: str) -> None:
    """Progress for people, on stderr (stdout stays the result, e.g. JSON for scripts)."""
    print(line, file=sys.stderr, flush=True)


def render(result: Result, as_json: bool) -> None:
    """The one place a command's result is printed: data as JSON, or its text; messages on stderr."""
    print(result.json() if as_json else result.text, flush=True)
    for message in result.messages:
        say(message.line())


def home() -> Home:
    """The factory home this command works in (HomeNotFound outside any home)."""
    return find_home()


def maybe_home() -> Home | None:
    """The factory home if there is one; None for commands that also work without (a student's launch)."""
    try:
        return find_home()
    except HomeNotFound:
        return None


def csv(value: str | None) -> tuple[str, ...] | None:
    """`a,b` -> ("a", "b"); nothing given -> None."""
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


def whole(value: str | None, option: str, low: int, high: int, unit: str = "", omitted: str = "") -> int | None:
    """An integer option in [low, high], or None when not given; one line naming the option otherwise."""
    if value is None:
        return None
    span = f"{low} to {high}{' ' + unit if unit else ''}{', or ' + omitted if omitted else ''}"
    try:
        number = int(value.strip())
    except ValueError:
        raise UsageError(f"{option} {value!r} is not a whole number", f"give {span}") from None
    if not low <= number <= high:
        raise UsageError(f"{option} {number} is out of range", f"give {span}")
    return number


def confirm(question: str, refused: str) -> None:
    """Ask on the terminal; anything but y/yes (or no terminal) stops the command with `refused`."""
    if not sys.stdin or not sys.stdin.isatty():
        raise UsageError(f"{refused}: there is no terminal to confirm on", "pass --yes")
    say(f"{question} [y/N]")
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise UsageError(refused, "answer y, or pass --yes")

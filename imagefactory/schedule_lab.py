"""Rebuilding stale images on a lab server: a crontab line, or a systemd user timer and service (pure: text
out of checked values, no I/O).

Both run `imagefactory rebuild --stale` in the factory home. The crontab line holds a lock (`flock -n`:
a run that finds the previous one still baking exits at once) and appends everything to
`<home>/.builds/rebuild.log`; the systemd service's output goes to the user's journal
(`journalctl --user -u imagefactory-rebuild`), and systemd never starts a oneshot service that is still
running. Paths are quoted for the shell (crontab) or escaped for unit files (systemd), never spliced raw.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

from imagefactory.errors import UsageError

UNIT = "imagefactory-rebuild"
DEFAULT_CALENDAR = "Mon *-*-* 06:00:00"
LOG_NAME = ".builds/rebuild.log"
LOCK_NAME = ".builds/rebuild.lock"
# OnCalendar's alphabet: weekday names, digits, `*-:.,/~` and spaces; nothing a unit file treats specially
CALENDAR_RE = re.compile(r"[A-Za-z0-9*,./:~ -]{1,100}")


@dataclass(frozen=True)
class LabSchedule:
    home: PurePosixPath       # the factory home (absolute)
    program: PurePosixPath    # the `imagefactory` console script (absolute)
    flock: bool = True        # util-linux's flock(1) is there to keep two crontab runs apart


def check_path(path: PurePosixPath, what: str) -> PurePosixPath:
    if not path.is_absolute() or any(ord(ch) < 32 or ord(ch) == 127 for ch in str(path)):
        raise UsageError(f"{what} {str(path)!r} is not an absolute path of printable characters",
                         "use a factory home whose path has no newline or control character")
    return path


def check_calendar(value: str) -> str:
    """`value` if it can be a systemd OnCalendar= expression (systemd-analyze checks the rest)."""
    if not CALENDAR_RE.fullmatch(value.strip()):
        raise UsageError(f"--at {value!r} is not a systemd calendar expression",
                         'give e.g. "Mon *-*-* 06:00:00" (weekday, date, time; see `man systemd.time`)')
    return " ".join(value.split())


def crontab_line(cron: str, lab: LabSchedule) -> str:
    """One crontab line: at `cron` (already checked), in the home, locked, logged to .builds/rebuild.log."""
    home = str(check_path(lab.home, "the factory home"))
    program = str(check_path(lab.program, "the imagefactory program"))
    if "%" in home + program:
        raise UsageError(f"{home if '%' in home else program} holds '%', which a crontab line turns into a newline",
                         "use --systemd, or a path without '%'")
    quoted = shlex.quote(home)
    lock = f"flock -n {LOCK_NAME} " if lab.flock else ""
    command = (f"cd {quoted} && mkdir -p .builds && IMAGEFACTORY_HOME={quoted} {lock}"
               f"{shlex.quote(program)} rebuild --stale >> {LOG_NAME} 2>&1")
    return f"{cron} {command}"


def _unit_word(value: str, *, command: bool) -> str:
    """A double-quoted word of a unit file setting, with `\\`, `"` and `%` escaped, and `$` too in a command
    line (ExecStart= expands variables; Environment= does not)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped.replace("$", "$$") if command else escaped}"'


def _unit_path(value: str) -> str:
    """A path setting's value (WorkingDirectory=): specifiers escaped; the rest is taken as it is."""
    if value != value.strip():
        raise UsageError(f"the path {value!r} starts or ends with a space", "use a path without")
    return value.replace("%", "%%")


def service_unit(lab: LabSchedule) -> str:
    home = str(check_path(lab.home, "the factory home"))
    program = str(check_path(lab.program, "the imagefactory program"))
    return "\n".join([
        "# Written by `imagefactory schedule.cron --systemd`: rebuilds the stale images of a factory home.",
        "# Output: the user's journal, `journalctl --user -u imagefactory-rebuild`.",
        "[Unit]",
        f"Description=imagefactory: rebuild the stale images of {_unit_path(home)}",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=oneshot",
        f"WorkingDirectory={_unit_path(home)}",
        f"Environment={_unit_word('IMAGEFACTORY_HOME=' + home, command=False)}",
        f"ExecStart={_unit_word(program, command=True)} rebuild --stale",
        "# a rebuild that hangs is stopped; a stopped bake cancels Packer and cleans up, which takes a while",
        "TimeoutStartSec=12h",
        "TimeoutStopSec=15min",
        "",
    ])


def timer_unit(calendar: str) -> str:
    return "\n".join([
        "# Written by `imagefactory schedule.cron --systemd`: when imagefactory-rebuild.service runs.",
        "[Unit]",
        "Description=imagefactory: rebuild stale images on a schedule",
        "",
        "[Timer]",
        f"OnCalendar={calendar}",
        "# a run missed while the machine was off happens at the next boot",
        "Persistent=true",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ])

"""`schedule.github` and `schedule.cron`: check the options, render (`schedule`, `schedule_lab`), and write
the files, never over a file that differs unless forced (the diff is shown instead).
"""

from __future__ import annotations

import difflib
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from imagefactory import __version__
from imagefactory.errors import UsageError
from imagefactory.home import Home
from imagefactory.result import Result


@dataclass(frozen=True)
class Written:
    path: Path
    status: str    # "written" | "unchanged" | "differs" (kept: not forced)
    diff: str

    def to_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "status": self.status, "diff": self.diff}


def write_or_diff(path: Path, text: str, *, force: bool) -> Written:
    """Write `text` to `path` unless a different file is there and `force` is not given."""
    from imagefactory.files import atomic_write

    old = path.read_text(encoding="utf-8") if path.is_file() else None
    if old == text:
        return Written(path, "unchanged", "")
    diff = "" if old is None else "".join(difflib.unified_diff(
        old.splitlines(keepends=True), text.splitlines(keepends=True), fromfile=f"{path} (now)",
        tofile=f"{path} (new)"))
    if old is not None and not force:
        return Written(path, "differs", diff)
    atomic_write(path, text)
    return Written(path, "written", diff)


def refuse_differing(files: list[Written]) -> None:
    """After the result is shown: a file kept because it differs makes the command fail."""
    kept = [str(w.path) for w in files if w.status == "differs"]
    if kept:
        raise UsageError(f"{', '.join(kept)} exists and differs (the diff is above); nothing was changed there",
                         "pass --force to replace it")


def _summary(files: list[Written]) -> list[str]:
    lines = []
    for w in files:
        lines.append(f"{w.path}: {w.status}")
        if w.status == "differs":
            lines.append(w.diff.rstrip("\n"))
    return lines


def _regions(home: Home, given: tuple[str, ...] | None) -> tuple[str, ...]:
    """The regions given, else every region the home's recipes bake in, else the factory's defaults."""
    from imagefactory.cloud.target import check_regions
    from imagefactory.recipe.model import DEFAULT_REGIONS
    from imagefactory.recipe.recipefile import load_recipe

    if given is not None:
        return check_regions(given)
    found: dict[str, None] = {}
    for path in sorted(home.recipes_dir.glob("*.yaml")):
        found.update(dict.fromkeys(load_recipe(path).image.regions))
    return tuple(found) or DEFAULT_REGIONS


def _default_install(home: Home) -> str:
    """'.' when the home is this factory's own source tree, else the released package of this version."""
    pyproject = home.root / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        try:
            if tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("name") == "imagefactory":
                return "."
        except tomllib.TOMLDecodeError:
            pass
    return f"imagefactory=={__version__}"


def github(home: Home, *, cron: str | None, role_arn: str | None, regions: tuple[str, ...] | None,
           max_parallel: int | None, install: str | None, force: bool) -> tuple[Result, list[Written]]:
    from imagefactory.packer import TESTED_VERSION
    from imagefactory.schedule import DEFAULT_CRON, ROLE_VARIABLE, WORKFLOW_PATH, GithubSchedule, workflow_text
    from imagefactory.schedule_checks import check_cron, check_install, check_role_arn

    options = GithubSchedule(
        cron=check_cron(cron or DEFAULT_CRON), regions=_regions(home, regions),
        role_arn=check_role_arn(role_arn) if role_arn is not None else None, max_parallel=max_parallel or 2,
        install=check_install(install or _default_install(home)), packer_version=TESTED_VERSION,
        factory_version=__version__)
    written = write_or_diff(home.root / WORKFLOW_PATH, workflow_text(options), force=force)
    data = {"workflow": written.to_dict(), "cron": options.cron, "regions": list(options.regions),
            "role": options.role_arn or f"vars.{ROLE_VARIABLE}", "max_parallel": options.max_parallel,
            "install": options.install, "packer_version": options.packer_version}
    result = Result(data, "\n".join(_summary([written])))
    if options.role_arn is None:
        result = result.note(f"set the repository variable {ROLE_VARIABLE} to the role's ARN "
                             f"(gh variable set {ROLE_VARIABLE} --body arn:aws:iam::ACCOUNT:role/NAME), or pass "
                             "--role-arn")
    if not _is_repository_root(home.root):
        result = result.warning(f"{home.root} is not the top of a git repository: GitHub reads workflows only "
                                "from .github/workflows/ at the repository's top")
    if written.status != "differs":
        result = result.note(f"commit {WORKFLOW_PATH} to the default branch: GitHub runs schedules from there only")
    return result, [written]


def _is_repository_root(folder: Path) -> bool:
    return (folder / ".git").exists()


def program_path() -> PurePosixPath:
    """The `imagefactory` console script this factory runs as (beside its Python, else on PATH)."""
    beside = Path(sys.executable).parent / "imagefactory"
    found = str(beside) if beside.is_file() else shutil.which("imagefactory")
    if not found:
        raise UsageError("the imagefactory program is neither beside this Python nor on PATH",
                         "install the package (pip install imagefactory) so its console script exists")
    return PurePosixPath(os.path.abspath(found))


def unit_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where systemd looks for a user's units: $XDG_CONFIG_HOME/systemd/user (~/.config/systemd/user)."""
    env = os.environ if env is None else env
    return Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "systemd" / "user"


def _ask_systemd(calendar: str) -> None:
    """Refuse a calendar expression systemd-analyze (where there is one) cannot parse."""
    from imagefactory.proc import run

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return
    done = run([analyze, "calendar", calendar], check=False, timeout=30)
    if done.returncode != 0:
        raise UsageError(f"--at {calendar!r} is not a systemd calendar expression "
                         f"({(done.stderr or done.stdout).strip().splitlines()[-1]})",
                         'give e.g. "Mon *-*-* 06:00:00" (see `man systemd.time`)')


def lab(home: Home, *, cron: str | None, systemd: bool, at: str | None, units: Path | None,
        force: bool) -> tuple[Result, list[Written]]:
    from imagefactory.schedule import DEFAULT_CRON
    from imagefactory.schedule_checks import check_cron
    from imagefactory.schedule_lab import (
        DEFAULT_CALENDAR,
        LOG_NAME,
        UNIT,
        LabSchedule,
        check_calendar,
        crontab_line,
        service_unit,
        timer_unit,
    )

    schedule = LabSchedule(home=PurePosixPath(home.root), program=program_path(),
                           flock=shutil.which("flock") is not None)
    if not systemd:
        if at is not None:
            raise UsageError("--at is the systemd timer's calendar", "add --systemd, or give --cron for crontab")
        line = crontab_line(check_cron(cron or DEFAULT_CRON), schedule)
        data = {"crontab": line, "log": str(home.root / LOG_NAME), "locked": schedule.flock}
        result = Result(data, line).note(f"add it with `crontab -e`; output goes to {home.root / LOG_NAME}; cron "
                                         "has a minimal environment: AWS credentials come from that user's ~/.aws")
        if not schedule.flock:
            result = result.warning("flock (util-linux) is not installed: nothing stops a run from starting while "
                                    "the previous one still bakes; install util-linux and run this again")
        return result, []
    if cron is not None:
        raise UsageError("--cron is the crontab line's schedule", "give --at for the systemd timer")
    calendar = check_calendar(at or DEFAULT_CALENDAR)
    _ask_systemd(calendar)
    folder = units or unit_dir()
    files = [write_or_diff(folder / f"{UNIT}.service", service_unit(schedule), force=force),
             write_or_diff(folder / f"{UNIT}.timer", timer_unit(calendar), force=force)]
    data = {"units": [w.to_dict() for w in files], "calendar": calendar,
            "log": f"journalctl --user -u {UNIT}.service"}
    result = Result(data, "\n".join(_summary(files)))
    if all(w.status != "differs" for w in files):
        result = result.note(f"start it: systemctl --user daemon-reload && systemctl --user enable --now "
                             f"{UNIT}.timer; logs: journalctl --user -u {UNIT}.service; to run while you are "
                             "logged out: loginctl enable-linger")
    return result, files

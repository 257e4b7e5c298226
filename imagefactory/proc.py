"""The one way this project runs other programs: argv lists only, errors that show what failed."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

from imagefactory.errors import FactoryError


class CommandError(FactoryError):
    """A program exited non-zero. Carries argv, exit code and the tail of its stderr."""

    def __init__(self, argv: list[str], code: int, stderr: str) -> None:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        super().__init__(f"{argv[0]} exited with code {code}: {tail}", f"command: {' '.join(argv)}")
        self.argv = argv
        self.code = code
        self.stderr = stderr


# what to install when a program the factory runs is missing (Debian/Ubuntu package names)
INSTALL = {"git": "apt-get install git", "ssh-keygen": "apt-get install openssh-client",
           "ssh": "apt-get install openssh-client", "packer": "apt-get install packer",
           "debootstrap": "apt-get install debootstrap", "systemd-nspawn": "apt-get install systemd-container",
           "zstd": "apt-get install zstd", "uv": "pip install uv (a dependency of imagefactory: reinstall it)"}


class MissingProgram(FactoryError):
    """A program the factory runs is not installed: one line naming it and what to install."""

    def __init__(self, program: str) -> None:
        name = Path(program).name
        super().__init__(f"{name} is not installed (not found on PATH)", INSTALL.get(name, f"install {name}"))


def run(argv: list[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
        timeout: float | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run argv to completion, capturing text output; raise CommandError on a non-zero exit and
    MissingProgram when argv[0] does not exist."""
    try:
        done = subprocess.run(argv, cwd=cwd, env=dict(env) if env is not None else None, text=True,
                              capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        if cwd is not None and not Path(cwd).is_dir():
            raise
        raise MissingProgram(argv[0]) from exc
    if check and done.returncode != 0:
        raise CommandError(argv, done.returncode, done.stderr or done.stdout)
    return done


def stream(proc: subprocess.Popen[str]) -> Iterator[str]:
    """Yield a running process's stdout line by line (without the newline)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        yield line.rstrip("\n")

"""Reading an image's systemd units: the parts a sandbox instance needs to start its services by hand.

The image is untrusted (a repository's postBuild ran in it), so every file is opened through
`image_file`, which refuses a path that leaves the tree (`..` or a symlink pointing out).
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

UNITS = "etc/systemd/system"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Unit:
    """The parts of a systemd service that matter here."""

    exec_start_pre: tuple[tuple[str, ...], ...]
    exec_start: tuple[str, ...]
    user: str | None
    workdir: str | None
    env_files: tuple[str, ...]


def image_file(root: Path, path: str) -> Path | None:
    """root/path resolved inside the image (symlinks followed as the image would), or None if it leaves it."""
    base = os.path.realpath(root)
    real = os.path.realpath(os.path.join(base, path.lstrip("/")))
    return Path(real) if real.startswith(base + os.sep) else None


def _read(root: Path, path: str) -> str | None:
    found = image_file(root, path)
    return found.read_text(encoding="utf-8", errors="replace") if found is not None and found.is_file() else None


def read_unit(root: Path, name: str) -> Unit | None:
    """Parse a unit and its drop-ins (the keys used here; later drop-ins win, as in systemd)."""
    main = _read(root, f"{UNITS}/{name}")
    if main is None:
        return None
    dropins = image_file(root, f"{UNITS}/{name}.d")
    texts = [main, *(t for p in (sorted(dropins.glob("*.conf")) if dropins else ())
                     if (t := _read(root, str(p.relative_to(os.path.realpath(root))))) is not None)]
    pre: list[tuple[str, ...]] = []
    values: dict[str, str] = {}
    env_files: list[str] = []
    for text in texts:
        for line in text.splitlines():
            key, sep, value = line.strip().partition("=")
            if not sep or line.lstrip().startswith(("#", ";")):
                continue
            if key == "ExecStartPre":
                pre.append(tuple(shlex.split(value.lstrip("-@+!"))))
            elif key == "EnvironmentFile":
                env_files.append(value.lstrip("-"))
            else:
                values[key] = value
    start = tuple(shlex.split(values.get("ExecStart", "").lstrip("-@+!")))
    return Unit(tuple(pre), start, values.get("User"), values.get("WorkingDirectory"), tuple(env_files))


def read_env_file(root: Path, path: str) -> dict[str, str]:
    """KEY=value lines of an EnvironmentFile inside the image (a missing file gives nothing)."""
    env: dict[str, str] = {}
    for line in (_read(root, path) or "").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            env[key] = value.strip().strip('"')
    return env


def expand(argv: tuple[str, ...], env: dict[str, str]) -> list[str]:
    """systemd's ${VAR} / $VAR substitution in an Exec line."""
    return [_VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), arg) for arg in argv]

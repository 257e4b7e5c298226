"""A hostile postBuild (tests/data/isolation/postBuild) planted in a repository, and the host-side
witnesses it must not touch: a `sleep` started here (its host PID is given to the script) and a host
path the script tries to write through /proc/1/root."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PROBE = Path(__file__).parent / "data" / "isolation" / "postBuild"
ALL_REFUSED = "isolation probe: all 8 attempts refused"


@dataclass
class Witness:
    sleeper: subprocess.Popen[bytes]
    host_file: Path

    def assert_host_unchanged(self) -> None:
        assert self.sleeper.poll() is None, "the host process was signalled from inside the sandbox"
        assert not self.host_file.exists(), "a host file was written from inside the sandbox"

    def close(self) -> None:
        self.sleeper.kill()
        self.sleeper.wait(timeout=10)


def plant(repo: Path, scratch: Path) -> Witness:
    """Add the probe as `postBuild` (run: true by repo2docker's convention) and what it aims at."""
    shutil.copy(PROBE, repo / "postBuild")
    (repo / ".isolation").mkdir(exist_ok=True)
    sleeper = subprocess.Popen(["sleep", "3600"], start_new_session=True)
    host_file = scratch / "written-from-the-sandbox"
    (repo / ".isolation/host-pid").write_text(f"{sleeper.pid}\n")
    (repo / ".isolation/host-file").write_text(f"{host_file}\n")
    return Witness(sleeper, host_file)

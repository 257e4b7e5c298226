"""Idle auto-stop: power the machine off after IF_IDLE_MINUTES without activity (Stop, not Terminate).

Run once a minute by imagefactory-idle.timer as root. Activity is any of: an established ssh connection
(which is also how the JupyterLab tunnel arrives), a busy kernel, or Jupyter's own last_activity. The
time of the last activity seen is kept in /run (so a boot counts as activity). Uses only the standard
library of the image's system python3 (3.10 or newer).
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import datetime

STAMP = "/run/imagefactory/last-activity"
SSH_PORT = 22
ESTABLISHED = "01"


def ssh_sessions() -> int:
    """Established TCP connections on the local ssh port, from /proc/net/tcp{,6}."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == SSH_PORT and fields[3] == ESTABLISHED:
                count += 1
    return count


def jupyter_get(path: str) -> object:
    port = os.environ.get("IF_JUPYTER_PORT", "8889")
    with open(os.environ["JUPYTER_TOKEN_FILE"], encoding="ascii") as fh:
        token = fh.read().strip()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def jupyter_activity() -> "tuple[float, bool]":
    """(last_activity as epoch seconds or 0, whether any kernel is busy); (0, False) if unreachable."""
    try:
        status = jupyter_get("/api/status")
        kernels = jupyter_get("/api/kernels")
    except (OSError, ValueError, KeyError):
        return 0.0, False
    stamp = status.get("last_activity") if isinstance(status, dict) else None
    last = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else 0.0
    busy = any(k.get("execution_state") == "busy" for k in kernels if isinstance(k, dict))
    return last, busy


def last_seen(now: float) -> float:
    try:
        return os.stat(STAMP).st_mtime
    except FileNotFoundError:
        touch(now)
        return now


def touch(when: float) -> None:
    os.makedirs(os.path.dirname(STAMP), exist_ok=True)
    with open(STAMP, "a", encoding="ascii"):
        pass
    os.utime(STAMP, (when, when))


def main() -> int:
    minutes = int(os.environ.get("IF_IDLE_MINUTES", "0") or 0)
    if minutes <= 0:
        return 0
    now = time.time()
    jupyter_last, busy = jupyter_activity()
    last = max(last_seen(now), jupyter_last)
    if ssh_sessions() or busy:
        last = now
    touch(last)
    idle = now - last
    if idle < minutes * 60:
        return 0
    print(f"idle for {idle / 60:.0f} minutes (limit {minutes}); powering off")
    return subprocess.run(["systemctl", "poweroff"], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())

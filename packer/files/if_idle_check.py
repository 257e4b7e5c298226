"""Idle auto-stop: power the machine off after N minutes without activity (Stop, not Terminate).

Run once a minute by imagefactory-idle.timer as root; the timer is in every image and this check decides
at run time. N comes from, in order:

1. /etc/imagefactory/autostop-minutes (`AUTOSTOP_FILE`), written at launch by the instance's user data
   (cloud-init) or the sandbox launcher: a whole number of minutes, 0 = never stop;
2. IF_IDLE_MINUTES from /etc/imagefactory/jupyter.env, baked from the recipe's autostop_minutes;
3. neither: never stop.

Activity is any of: an established ssh connection (which is also how the JupyterLab tunnel arrives), a busy
kernel, or Jupyter's own last_activity (read with no_track_activity, so this check is not activity itself).
The time of the last activity seen is kept in /run (so a boot counts as activity). Powering off is a Stop:
the launcher sets InstanceInitiatedShutdownBehavior=stop. Uses only the standard library of the image's
system python3 (3.10 or newer).
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import datetime

AUTOSTOP_FILE = "/etc/imagefactory/autostop-minutes"
STAMP = "/run/imagefactory/last-activity"
POWER_OFF = (["systemctl", "poweroff"], ["shutdown", "-h", "now"])
SSH_PORT = 22
ESTABLISHED = "01"


def whole_minutes(text: str, source: str) -> "int | None":
    """A minutes value (negative counts as 0, i.e. off), or None with a warning if it is not a number."""
    try:
        return max(int(text.strip()), 0)
    except ValueError:
        print(f"if_idle_check: ignoring {source}: {text.strip()[:40]!r} is not a whole number of minutes",
              file=sys.stderr)
        return None


def idle_minutes() -> int:
    """The idle limit in minutes, 0 meaning never stop: the launch setting wins over the baked one."""
    try:
        with open(AUTOSTOP_FILE, encoding="utf-8") as fh:
            launched = whole_minutes(fh.read(), AUTOSTOP_FILE)
    except FileNotFoundError:
        launched = None
    except (OSError, UnicodeDecodeError) as exc:
        print(f"if_idle_check: cannot read {AUTOSTOP_FILE}: {exc}", file=sys.stderr)
        launched = None
    if launched is not None:
        return launched
    baked = os.environ.get("IF_IDLE_MINUTES", "")
    return (whole_minutes(baked, "IF_IDLE_MINUTES") or 0) if baked.strip() else 0


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
        kernels = jupyter_get("/api/kernels?no_track_activity=1")  # else this request counts as activity
        stamp = status.get("last_activity") if isinstance(status, dict) else None
        last = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else 0.0
        busy = any(k.get("execution_state") == "busy" for k in kernels if isinstance(k, dict))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0.0, False
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


def power_off() -> int:
    """Stop the machine: `systemctl poweroff`, else `shutdown -h now`. Never a Terminate."""
    code = 1
    for argv in POWER_OFF:
        try:
            code = subprocess.run(argv, check=False).returncode
        except OSError as exc:
            print(f"if_idle_check: {argv[0]}: {exc}", file=sys.stderr)
            continue
        if code == 0:
            return 0
    return code


def main() -> int:
    minutes = idle_minutes()
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
    print(f"idle for {idle / 60:.0f} minutes (limit {minutes}); powering off (Stop)", flush=True)
    return power_off()


if __name__ == "__main__":
    sys.exit(main())

"""A real browser through the real tunnel: headless Chromium opens the sandbox instance's JupyterLab.

The page must load and its launcher must offer the recipe's kernel; a screenshot is kept in
tests/artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_launch import ARTIFACTS, Connected, cmdlines, free_port, lab, tunnel_processes

from imagefactory.home import Home

pytestmark = pytest.mark.network  # the lab comes from a provisioned bake (packages from the index)

__all__ = ["lab"]  # the module-scoped fixture: the example launched as a local instance

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,800", "--virtual-time-budget=30000")
KERNEL_CARD = 'class="jp-LauncherCard" title="Python 3.11 (hello-binder)"'


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=180, check=False)


def test_jupyterlab_opens_in_chromium_and_offers_the_recipe_kernel(lab: dict[str, Any], example_home: Home,
                                                                   tmp_path: Path) -> None:
    assert CHROMIUM is not None, "chromium is not installed: scripts/bootstrap installs it (apt-get install chromium)"
    port = free_port()
    c = Connected(example_home, lab["instance_id"], port)
    try:
        dom = chromium(tmp_path / "profile-dom", "--dump-dom", c.url)
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert "jp-Launcher" in dom.stdout, "JupyterLab's launcher did not render"
        assert KERNEL_CARD in dom.stdout, "the launcher does not offer the recipe's kernel"
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "jupyterlab-launcher.png"
        shot.unlink(missing_ok=True)
        done = chromium(tmp_path / "profile-shot", f"--screenshot={shot}", c.url)
        assert done.returncode == 0 and shot.stat().st_size > 10_000, done.stderr[-2000:]
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        assert c.close() == 0
    assert tunnel_processes(port) == []
    assert [pid for pid, cmd in cmdlines() if str(tmp_path) in cmd] == [], "chromium left processes behind"

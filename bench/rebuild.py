"""Full versus incremental sandbox bake of the bundled example after a one-line commit, in one run.

    python bench/rebuild.py [--runs 1]

Makes a factory home and a git repository holding examples/hello-binder in a temp dir, bakes it once
(provisioned, for real: not timed; it starts the emulator and is the parent), then per run commits a
one-line change and bakes that commit twice: a full bake, and an incremental one from the first build
(`BakeOptions(parent=...)`). Prints both wall times, their per-stage timings and the ratio (target: the
incremental bake at least 3x faster), and per bake the seconds of each step of `packer build` (from
its log: launch, ssh, upload, each provisioning script, the AMIs). Needs what a provisioned sandbox
bake needs (Linux, root, the package indexes). Figures are printed, not asserted; on a machine shared
with other work they vary (the load average is printed with the ratio).
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}
STAGES = ("setup", "resolve", "derive", "packages", "machine", "root-start", "render", "validate", "build",
          "root-stop", "pack", "record")
# packer.log (machine-readable, whole seconds): where each step of `packer build` starts
STEP_MARKS = (("launch", "Prevalidating any provided VPC"), ("ssh", "Waiting for SSH"),
              ("upload", "Uploading ./provision"), ("script", "Provisioning with shell script: "),
              ("amis", "Stopping the source instance"), ("end", "finished after"))


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, check=True, capture_output=True)


def make_repo(root: Path) -> Path:
    repo = root / "hello-binder"
    shutil.copytree(ROOT / "examples" / "hello-binder", repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial")
    return repo


def one_line_commit(repo: Path, run: int) -> None:
    hello = repo / "hello.py"
    hello.write_text(hello.read_text() + f"print('one more line, run {run}')\n")
    git(repo, "commit", "-qam", f"one line ({run})")


def packer_steps(build_dir: Path) -> str:
    """Seconds per step of `packer build` from its log's timestamps: launch, ssh, each script, the AMIs."""
    marks: list[tuple[str, int]] = []
    for line in (build_dir / "packer.log").read_text(errors="replace").splitlines():
        stamp, _, rest = line.partition(",")
        for name, text in STEP_MARKS:
            if ",ui,say," in rest and text in rest and stamp.isdigit():
                label = rest.rpartition("/")[2].removesuffix(".sh") if name == "script" else name
                marks.append((label, int(stamp)))
    steps = [(label, later - at) for (label, at), (_, later) in itertools.pairwise(marks)]
    return "  ".join(f"{label} {seconds}" for label, seconds in steps)


def bake(home_root: Path, repo: Path, parent: str | None) -> tuple[float, str, dict[str, float], str | None]:
    from imagefactory.bake import BakeOptions
    from imagefactory.bake import bake as run_bake
    from imagefactory.home import Home

    started = time.perf_counter()
    result = run_bake(Home(home_root), BakeOptions(repo=str(repo), sandbox=True, parent=parent), lambda _: None)
    seconds = time.perf_counter() - started
    print(f"  {result.build_id} packer build steps (s): {packer_steps(Path(result.build_dir))}")
    return seconds, result.build_id, result.timings, result.parent_build


def stages(timings: dict[str, float]) -> str:
    return "  ".join(f"{name} {timings[name]:.1f}" for name in STAGES if name in timings)


def load() -> str:
    return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg()) + f" on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    from imagefactory.home import Home
    from imagefactory.sandbox.emulator import down

    with tempfile.TemporaryDirectory(prefix="if-bench-rebuild-") as tmp:
        home_root = Path(tmp) / "home"
        home_root.mkdir()
        (home_root / "catalog.yaml").write_text("catalog_version: 1\nimages: {}\n")
        repo = make_repo(Path(tmp))
        try:
            seconds, parent, _, _ = bake(home_root, repo, None)
            print(f"parent: full bake {parent} in {seconds:.1f} s (not timed below: it starts the emulator)")
            fulls, incs = [], []
            for run in range(1, args.runs + 1):
                one_line_commit(repo, run)
                full, full_id, full_t, _ = bake(home_root, repo, None)
                inc, inc_id, inc_t, from_build = bake(home_root, repo, parent)
                if from_build != parent:
                    raise SystemExit(f"the incremental bake {inc_id} did not start from {parent}")
                fulls.append(full)
                incs.append(inc)
                print(f"run {run}: full {full:.1f} s ({full_id}: {stages(full_t)})")
                print(f"run {run}: incremental {inc:.1f} s ({inc_id} from {parent}: {stages(inc_t)})")
            full_s, inc_s = statistics.median(fulls), statistics.median(incs)
            print(f"full bake        {full_s:6.1f} s")
            print(f"incremental bake {inc_s:6.1f} s")
            print(f"ratio            {full_s / inc_s:6.2f}x  (target >= 3x; {load()})")
        finally:
            down(Home(home_root).emulator_dir)


if __name__ == "__main__":
    main()

"""Wall time of each stage of a sandbox bake, and the start-up time of `invoke --list`.

    python bench/bake_overhead.py [--runs 3]

The bakes are API-only (no provisioning: that is Packer's and the scripts' time, measured by
bench/provision.py), so what is left is the orchestrator. Targets: the orchestrator's own overhead
(every stage but Packer's build; the emulator starts once per machine) under 2 s; `invoke --list`
under 0.5 s. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAGES = ("resolve", "derive", "packages", "render", "validate", "build", "record")


def make_repo(root: Path) -> Path:
    repo = root / "bench-repo"
    (repo / "environment").mkdir(parents=True)
    (repo / "environment" / "requirements.txt").write_text("six==1.16.0\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@x"}
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-qm", "x"]):
        subprocess.run(argv, cwd=repo, env=env, check=True)
    return repo


def bake_once(home_root: Path, repo: Path, name: str) -> dict[str, float]:
    from imagefactory.bake import BakeOptions, bake
    from imagefactory.home import Home

    opts = BakeOptions(repo=repo.as_uri(), name=name, sandbox=True, api_only=True)
    result = bake(Home(home_root), opts, lambda _: None)
    return result.timings


def list_startup(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home_root = Path(tmp) / "home"
        home_root.mkdir()
        (home_root / "catalog.yaml").write_text("catalog_version: 1\nimages: {}\n")
        os.environ["IMAGEFACTORY_HOME"] = str(home_root)
        repo = make_repo(Path(tmp))
        try:
            runs = [bake_once(home_root, repo, f"bench-{i}") for i in range(args.runs + 1)]
        finally:
            from imagefactory.sandbox.emulator import down

            down(home_root / ".sandbox" / "emulator")
    first, warm = runs[0], runs[1:]
    print(f"sandbox bake, {len(warm)} warm runs (setup = emulator + Packer version; "
          f"the first run started the emulator: {first['setup']:.2f} s)")
    print(f"{'stage':<10} {'median s':>9} {'max s':>7}")
    for stage in ("setup", *STAGES):
        values = [r[stage] for r in warm]
        print(f"{stage:<10} {statistics.median(values):>9.3f} {max(values):>7.3f}")
    overhead = [sum(v for k, v in r.items() if k != "build") for r in warm]
    verdict = "meets" if statistics.median(overhead) < 2.0 else "MISSES"
    print(f"orchestrator overhead (all but Packer's build): median {statistics.median(overhead):.3f} s "
          f"-> {verdict} the 2 s target")
    listing = list_startup(5)
    verdict = "meets" if statistics.median(listing) < 0.5 else "MISSES"
    print(f"invoke --list: median {statistics.median(listing):.3f} s over 5 runs -> {verdict} the 0.5 s target")


if __name__ == "__main__":
    main()

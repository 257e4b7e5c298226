"""Wall time of `imagefactory stale` over 20 images built in 2 regions, in the sandbox, warm.

    python bench/stale.py [--images 20] [--runs 3]

Seeds a fresh home: one API-only sandbox bake of a real local git repository, then N-1 more images, each
its own real git repository and recipe, recorded in the catalog as copies of that build (with their own
commit). Half of the repositories then get a new commit, so half the images are stale. Each run is the
real console script (`imagefactory stale --json`: interpreter start, catalog, recipes, `git ls-remote` per
repository, the base-image lookups per region, the contract digest) with the emulator already running.
Target: under 5 s. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REGIONS = "us-west-2,us-east-2"
CLI = [sys.executable, "-c", "from imagefactory.main import program; program.run()"]
GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@x", "GIT_CONFIG_NOSYSTEM": "1"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, check=True, text=True,
                          capture_output=True).stdout.strip()


def make_repo(root: Path, name: str) -> Path:
    repo = root / "repos" / name
    repo.mkdir(parents=True)
    (repo / "requirements.txt").write_text("six==1.16.0\n")
    (repo / "a.py").write_text(f"print({name!r})\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial")
    return repo


def seed(root: Path, count: int, env: dict[str, str]) -> Path:
    """A home with `count` images in the sandbox catalog (one baked, the others recorded like it)."""
    from imagefactory import catalog
    from imagefactory.home import Home
    from imagefactory.observations import effective_recipe
    from imagefactory.recipe import load_recipe, write_recipe

    home = Home(root / "home")
    home.root.mkdir(parents=True)
    (home.root / "catalog.yaml").write_text("catalog_version: 1\nimages: {}\n")
    first = make_repo(root, "img-00")
    subprocess.run([*CLI, "bake", "--api-only", "--no-resolve", "--repo",
                    first.as_uri(), "--regions", REGIONS], cwd=home.root, env=env, check=True, capture_output=True)
    path = home.catalog_path("sandbox")
    baked = catalog.load(path).image("img-00")
    template = baked.latest_build()
    assert template is not None
    recipe = load_recipe(home.recipe_path("img-00"))
    for i in range(1, count):
        name = f"img-{i:02d}"
        repo = make_repo(root, name)
        url = repo.as_uri()
        commit = git(repo, "rev-parse", "HEAD")
        mine = replace(recipe, name=name, source=replace(recipe.source, repo=url, commit=commit))
        write_recipe(home.recipe_path(name), mine)
        build = replace(template, id=f"{template.id[:-4]}{i:04x}", commit=commit)
        build = replace(build, recipe_digest=effective_recipe(mine, build, "sandbox").digest())
        catalog.update(path, lambda c, name=name, url=url, build=build: catalog.record(
            c, name=name, repo=url, recipe=f"recipes/{name}.yaml", recipe_digest=build.recipe_digest, build=build))
    for i in range(0, count, 2):
        repo = root / "repos" / f"img-{i:02d}"
        (repo / "a.py").write_text("print('moved')\n")
        git(repo, "commit", "-qam", "moved")
    return home.root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-stale-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"IMAGEFACTORY_HOME": str(Path(tmp) / "home"), "IMAGEFACTORY_SANDBOX": "1", **GIT_ENV})
        started = time.perf_counter()
        home = seed(Path(tmp), args.images, env)
        print(f"seeded {args.images} images x 2 regions in {time.perf_counter() - started:.1f} s")
        try:
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                done = subprocess.run([*CLI, "stale", "--json"], cwd=home,
                                      env=env, check=True, capture_output=True, text=True)
                times.append(time.perf_counter() - t0)
            report = json.loads(done.stdout)
            statuses = [i["status"] for i in report["images"]]
            counts = {s: statuses.count(s) for s in ("stale", "fresh", "unknown")}
            print(f"imagefactory stale --json, {len(statuses)} images, warm: "
                  f"median {statistics.median(times):.2f} s, min {min(times):.2f} s, max {max(times):.2f} s "
                  f"(target < 5 s); {counts}")
        finally:
            subprocess.run([*CLI, "sandbox.down"], cwd=home, env=env,
                           capture_output=True, check=False)


if __name__ == "__main__":
    main()

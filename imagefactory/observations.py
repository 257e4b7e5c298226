"""What is true now, for the stale decision: each image's ref on its remote, its recipe's digest, the newest
base image per region, the image contract's digest, and what its pip requirements resolve to.

Every observation runs concurrently (one thread pool for all images; the same remote ref or base-image
filter is asked once) and each is bounded in time: git and uv by their own timeouts, the whole by a
deadline. One that fails or does not answer in time is `Seen(error=...)`, never a fresh value.
"""

from __future__ import annotations

import concurrent.futures as cf
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagefactory import contract
from imagefactory.base_images import BASES
from imagefactory.catalog import Build, ImageEntry
from imagefactory.cloud.target import Target, python_default
from imagefactory.errors import FactoryError
from imagefactory.home import Home
from imagefactory.recipe import PythonSpec, Recipe, RepoTree
from imagefactory.recipe.python import redefault
from imagefactory.repo import URL_RE, cached_checkout, dir_digest, remote_commit
from imagefactory.repo import resolve as resolve_repo
from imagefactory.staleness import Facts, Seen

GIT_TIMEOUT_S = 10.0
CLOUD_TIMEOUT_S = 15.0
RESOLVE_TIMEOUT_S = 60.0
PACKAGES_DEADLINE_S = 120.0  # a package check may first fetch the build's commit, then resolve with uv


@dataclass(frozen=True)
class Subject:
    """One image to observe: its catalog entry, its latest available build, and the recipe a rebuild would
    bake now (`effective_recipe`; None: why it could not be read)."""

    entry: ImageEntry
    latest: Build
    recipe: Recipe | None
    recipe_error: str | None = None


def effective_recipe(recipe: Recipe, build: Build, target_kind: str) -> Recipe:
    """The recipe a rebuild of `build` would bake, as `recipe_commands.bake_recipe` makes it: this target's
    Python default in place of another's, and the build's --python override (a rebuild keeps it). A build
    baked with --regions is not rebuilt there: the recipe's regions count, so its digest differs."""
    moved = redefault(recipe.environment.python, python_default(target_kind))
    if moved is not None:
        recipe = recipe.with_python(moved)
    if build.python_override and build.python:
        recipe = recipe.with_python(PythonSpec(build.python, "override", "--python given on the command line"))
    return recipe


def gather(home: Home, target: Target, subjects: list[Subject], *, deadline_s: float = 30.0) -> dict[str, Facts]:
    """The facts of every subject, observed concurrently; whatever misses the deadline is unknown."""
    regions = sorted({r for s in subjects for r in s.latest.amis})
    clients = {r: target.client("ec2", r) for r in regions}  # made here, once per region: not thread-safe
    jobs: dict[tuple[Any, ...], Callable[[], Any]] = {("contract",): lambda: contract.digest(home.packer_dir)}
    for s in subjects:
        url, ref = s.entry.repo, s.latest.ref
        jobs[("commit", url, ref)] = lambda url=url, ref=ref: _commit(home, url, ref)
        if s.recipe is not None:
            base = BASES.get(s.recipe.image.base)
            for region in s.latest.amis:
                if base is not None:
                    jobs[("base", region, base.key)] = lambda c=clients[region], b=base: _newest_base(c, b)
            if _resolves(s):
                jobs[("packages", s.entry.name)] = lambda s=s: _packages(home, s)
    found = run_bounded(jobs, lambda key: PACKAGES_DEADLINE_S if key[0] == "packages" else deadline_s)
    contract_now = found[("contract",)]
    return {s.entry.name: _facts(s, found, contract_now) for s in subjects}


def _facts(s: Subject, found: dict[tuple[Any, ...], Seen[Any]], contract_now: Seen[str]) -> Facts:
    if s.recipe is None:
        missing = Seen[Any](error=s.recipe_error or "the recipe could not be read")
        return Facts(commit=found[("commit", s.entry.repo, s.latest.ref)], recipe_digest=missing, base_amis=missing,
                     contract_digest=contract_now, packages=missing if s.latest.provisioned else None)
    recipe = s.recipe
    base = BASES.get(recipe.image.base)
    if base is None:
        bases: Seen[dict[str, str]] = Seen(error=f"the recipe's image.base {recipe.image.base!r} is not known")
    else:
        errors = [seen.error for r in s.latest.amis if (seen := found[("base", r, base.key)]).error]
        bases = Seen(error="; ".join(errors)) if errors else Seen(
            {r: v for r in s.latest.amis if (v := found[("base", r, base.key)].value)})
    return Facts(commit=found[("commit", s.entry.repo, s.latest.ref)], recipe_digest=Seen(recipe.digest()),
                 base_amis=bases, contract_digest=contract_now,
                 packages=found[("packages", s.entry.name)] if _resolves(s) else None)


def _resolves(s: Subject) -> bool:
    """The package check applies to a build that installed something, of a recipe with pip requirements."""
    env = s.recipe.environment if s.recipe is not None else None
    return s.latest.provisioned and env is not None and bool(env.pip or env.conda)


def run_bounded(jobs: dict[tuple[Any, ...], Callable[[], Any]],
                deadline_of: Callable[[tuple[Any, ...]], float]) -> dict[tuple[Any, ...], Seen[Any]]:
    """Run every job at once; each one's value, or its error, or that it gave no answer by its deadline."""
    found: dict[tuple[Any, ...], Seen[Any]] = {}
    pool = cf.ThreadPoolExecutor(max_workers=min(32, len(jobs)), thread_name_prefix="observe")
    try:
        futures = {pool.submit(job): key for key, job in jobs.items()}
        started = time.monotonic()
        for future, key in futures.items():
            limit = deadline_of(key)
            try:
                found[key] = Seen(future.result(timeout=max(0.0, started + limit - time.monotonic())))
            except cf.TimeoutError:
                found[key] = Seen(error=f"no answer within {limit:g} s")
            except subprocess.TimeoutExpired as exc:
                found[key] = Seen(error=f"{exc.cmd[0]} gave no answer within {exc.timeout:g} s")
            except FactoryError as exc:
                found[key] = Seen(error=" ".join(exc.message.split())[:300])
            except Exception as exc:  # a cloud or network error: the observation is unknown, never fresh
                found[key] = Seen(error=f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300])
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return found


def _commit(home: Home, url: str, ref: str | None) -> str:
    """The commit the build's ref points at now; a plain folder's content digest."""
    if URL_RE.fullmatch(url):
        if ref is None:
            raise FactoryError(f"the build of {url} recorded no ref", "bake it again")
        return remote_commit(url, ref, timeout=GIT_TIMEOUT_S)
    folder = Path(url) if Path(url).is_absolute() else home.root / url
    if not folder.is_dir():
        raise FactoryError(f"the folder {folder} is gone", "bake the image from where its repository is now")
    return dir_digest(folder)


def _newest_base(ec2: Any, base: Any) -> str:
    """The AMI Packer's `source_ami_filter` picks now (the most recent match), as the template asks."""
    images = ec2.describe_images(Owners=[base.owner], Filters=[
        {"Name": "name", "Values": [base.name_filter]}, {"Name": "root-device-type", "Values": ["ebs"]},
        {"Name": "virtualization-type", "Values": ["hvm"]}])["Images"]
    if not images:
        raise FactoryError(f"no image of owner {base.owner} matches {base.name_filter}",
                           "check the recipe's image.base")
    return str(max(images, key=lambda i: i.get("CreationDate", ""))["ImageId"])


def _packages(home: Home, s: Subject) -> tuple[str, ...]:
    """The pins the recipe's pip requirements (at the build's commit) resolve to now, with uv. A fresh
    clone cache (a CI runner) fetches that one commit, shallow."""
    from imagefactory.package_index import for_home
    from imagefactory.recipe.resolve import resolve

    assert s.recipe is not None
    url = s.entry.repo
    if URL_RE.fullmatch(url):  # the checkout a bake left in the clone cache, else that one commit, fetched
        tree = cached_checkout(home.cache_dir, url, s.latest.commit) or resolve_repo(
            url, ref=s.latest.commit, cache_dir=home.cache_dir, catalog_repos={}, progress=lambda _l: None).path
    else:
        tree = Path(url) if Path(url).is_absolute() else home.root / url
    if not tree.is_dir():
        raise FactoryError(f"the folder {tree} is gone", "bake the image from where its repository is now")
    result = resolve(s.recipe, RepoTree.scan(tree), index=for_home(home), timeout=RESOLVE_TIMEOUT_S)
    if not result.ok:
        raise FactoryError(f"the requirements do not resolve now: {result.message}",
                           "see invoke recipe.check NAME --resolve")
    return result.pins

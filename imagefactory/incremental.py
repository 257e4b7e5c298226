"""Incremental builds: whether a bake may start from a previous build's image instead of the base image.

An incremental build launches the parent build's AMI, puts the new commit in place and runs only the
stages after the environment install (`provision.INCREMENTAL_FIRST_STAGE` on: repo, post-build, Jupyter,
smoke test, manifest, clean-up, secret scan). That is right only when the image would get the same
environment anyway, so `decide` (pure: data in, a decision out) checks, in this order, and the first
failing check is the one-line reason a full bake is made instead:

- the parent is a build of this image, in this target's catalog, `available`, provisioned as this bake is;
- the recipe's digest is the parent's (packages, Python, base image, regions, login user: all in it);
- the environment inputs the parent's manifest recorded (the digest of the skipped stages and of the
  repository's environment files: pip/conda/Pipfile files and their includes, the packaging files when
  the repo is installed) are the ones this bake would use;
- fewer than `rebuild.max_chain` incremental builds lead up to the parent;
- the parent's AMI is still there, available and not deprecated (by the catalog, as `prune` records it,
  or by EC2's DeprecationTime), in every region of the recipe.

`environment_inputs` (reads the checkout) and `observe_amis` (asks EC2) gather what `decide` needs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from imagefactory.catalog import Build, Catalog
from imagefactory.cloud.target import Target
from imagefactory.recipe import Recipe, RepoTree
from imagefactory.recipe.requirements import follow, parse_requirements

PACKAGING_FILES = ("pyproject.toml", "setup.py", "setup.cfg")
AMI_OK, AMI_MISSING, AMI_DEPRECATED, AMI_UNAVAILABLE = "ok", "missing", "deprecated", "unavailable"


@dataclass(frozen=True)
class Start:
    """Where a bake starts: `parent` (an incremental build from its image) or None (a full bake, `reason`)."""

    parent: Build | None
    reason: str | None = None
    chain: int = 0  # incremental builds up to and including this one (0: a full bake)

    @property
    def incremental(self) -> bool:
        return self.parent is not None


def chain_length(builds: Mapping[str, Build], build: Build) -> int:
    """How many incremental builds lead up to `build`, itself included (0 for a full bake). Pure."""
    count, seen, current = 0, set(), build
    while current.parent_build is not None and current.id not in seen:
        seen.add(current.id)
        count += 1
        parent = builds.get(current.parent_build)
        if parent is None:
            break
        current = parent
    return count


def decide(catalog: Catalog, *, image: str, parent_id: str, provision: bool, recipe_digest: str,
           inputs: Mapping[str, Any], max_chain: int, amis: Mapping[str, str] | None) -> Start:
    """May this bake of `image` start from build `parent_id`? `inputs` are this bake's environment inputs,
    `amis` the parent's AMI state per region of the recipe (`observe_amis`; None: not observed yet, for
    the checks that need no cloud). Pure."""
    entry = catalog.images.get(image)
    parent = entry.build(parent_id) if entry else None
    if parent is None:
        other = next((name for name, e in sorted(catalog.images.items()) if e.build(parent_id)), None)
        where = f"a build of image {other}, not {image}" if other else f"not a build of image {image} in the catalog"
        return _full(f"parent build {parent_id} is {where}")
    if parent.status != "available":
        return _full(f"parent build {parent_id} is {parent.status}, not available")
    if not provision:
        return _full("an API-only bake installs nothing, so there is nothing to skip")
    if not parent.provisioned:
        return _full(f"parent build {parent_id} was not provisioned (API-only)")
    if parent.recipe_digest != recipe_digest:
        return _full(f"the recipe changed since parent build {parent_id} "
                     f"({_short(parent.recipe_digest)} -> {_short(recipe_digest)})")
    recorded = (parent.image_manifest or {}).get("environment_inputs")
    if not isinstance(recorded, dict):
        return _full(f"parent build {parent_id}'s manifest records no environment inputs (made before "
                     "incremental builds)")
    changed = _changed_inputs(recorded, inputs)
    if changed:
        return _full(f"the environment changed since parent build {parent_id}: {', '.join(changed)}")
    chain = chain_length({b.id: b for b in entry.builds}, parent) if entry else 0
    if chain >= max_chain:
        return _full(f"parent build {parent_id} ends a chain of {chain} incremental builds "
                     f"(rebuild.max_chain is {max_chain})")
    for region, when in sorted(parent.deprecated_at.items()):  # recorded by prune
        return _full(f"parent build {parent_id}'s AMI in {region} was deprecated at {when}")
    for region, state in sorted((amis or {}).items()):
        ami = parent.amis.get(region, "no AMI")
        if state != AMI_OK:
            return _full(f"parent build {parent_id}'s AMI in {region} ({ami}) is {_STATE_WORDS.get(state, state)}")
    return Start(parent=parent, chain=chain + 1)


_STATE_WORDS = {AMI_MISSING: "gone", AMI_DEPRECATED: "deprecated", AMI_UNAVAILABLE: "not available"}


def _full(reason: str) -> Start:
    return Start(parent=None, reason=reason)


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12] or "none"


def _changed_inputs(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    changed = []
    if recorded.get("stages") != current.get("stages"):
        changed.append("the image contract's environment stages")
    old, new = recorded.get("files") or {}, current.get("files") or {}
    changed += sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))
    return changed


def ami_state(image: dict[str, Any] | None, now: datetime) -> str:
    """One DescribeImages entry (None: not found) as AMI_OK / MISSING / DEPRECATED / UNAVAILABLE. Pure."""
    if image is None:
        return AMI_MISSING
    if image.get("State", "available") != "available":
        return AMI_UNAVAILABLE
    when = image.get("DeprecationTime")
    if when:
        try:
            at = datetime.fromisoformat(str(when).replace("Z", "+00:00"))
        except ValueError:
            return AMI_DEPRECATED
        if at <= now:
            return AMI_DEPRECATED
    return AMI_OK


# -- the effectful shell: what `decide` needs, gathered

def observe_amis(target: Target, parent: Build, regions: tuple[str, ...]) -> dict[str, str]:
    """The parent's AMI state in each region (asked of EC2; an AMI it never had is missing)."""
    now = datetime.now(UTC)
    states: dict[str, str] = {}
    for region in regions:
        ami = parent.amis.get(region)
        found = None
        if ami:
            ec2 = target.client("ec2", region)
            try:
                images = ec2.describe_images(ImageIds=[ami])["Images"]
            except ClientError as exc:
                if "InvalidAMIID" not in str(exc):
                    raise
                images = []
            found = images[0] if images else None
        states[region] = ami_state(found, now)
    return states


def environment_inputs(recipe: Recipe, checkout: Path, stages_digest: str) -> dict[str, Any]:
    """What the skipped stages install from: their own digest, and a digest per repository file they read."""
    tree = RepoTree.scan(checkout)
    env = recipe.environment
    names: list[str] = [*env.conda]
    for rel in env.pip:
        names.append(rel)
        if tree.has(rel):
            found = follow(tree, rel, parse_requirements(tree.read_text(rel), rel))
            names += [f.path for f in found.files]
    if env.pipfile:
        names += [env.pipfile, f"{env.pipfile}.lock"]
    if env.install_repo:
        names += list(PACKAGING_FILES)
    files = {}
    for rel in dict.fromkeys(names):
        path = checkout / rel
        files[rel] = _file_digest(path) if path.is_file() else "absent"
    return {"stages": stages_digest, "files": files}


def _file_digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()

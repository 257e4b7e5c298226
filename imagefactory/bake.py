"""The bake pipeline as one function: repo -> recipe -> rendered Packer template -> AMIs -> catalog.

Every stage is timed (the benchmark reads `BakeResult.timings`). Everything is checked before anything is
spent; then `build_job.Job` runs the build. A failure after the build starts always ends the same way
(`bake_failure`): Packer is cancelled and cleans up what it created, any AMI still tagged with this build
id is removed, and the catalog records a failed (or interrupted) build, saying what happened; what the
catalog held before is untouched.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imagefactory import catalog
from imagefactory.build_job import Clock, Job
from imagefactory.build_machine import check_sandbox_needs, parent_image, plan
from imagefactory.checkouts import checkout
from imagefactory.cloud.access import caller_cidr
from imagefactory.cloud.target import SANDBOX_NOTICE, Target, check_regions, choose_target, open_target, python_default
from imagefactory.errors import FactoryError, ResolveError
from imagefactory.home import Home
from imagefactory.incremental import decide, environment_inputs, observe_amis
from imagefactory.packer import find_packer
from imagefactory.preflight import preflight
from imagefactory.pricing import image_storage, load_table
from imagefactory.provision import environment_stages_digest
from imagefactory.recipe import Recipe
from imagefactory.recipe_commands import bake_recipe, rehearsal, resolve_check
from imagefactory.render import ParentImage
from imagefactory.repo import Checkout
from imagefactory.sandbox.images import Image, Missing
from imagefactory.smoke import proof_lines

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BakeOptions:
    repo: str
    ref: str | None = None
    name: str | None = None
    regions: tuple[str, ...] | None = None
    sandbox: bool = False
    python: str | None = None
    resolve: bool = True
    api_only: bool = False
    extra_ca: str | None = None
    parent: str | None = None  # build id to start from (incremental); None: a full bake


@dataclass(frozen=True)
class BakeResult:
    image: str
    build_id: str
    target: str
    status: str
    amis: dict[str, str]
    catalog_path: str
    recipe_path: str
    build_dir: str
    notes: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    provisioned: bool = False
    parent_build: str | None = None  # an incremental build's parent (the notes say why a full bake was made)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_build_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def bake(home: Home, opts: BakeOptions, progress: Progress) -> BakeResult:
    clock = Clock()
    kind = choose_target(sandbox=opts.sandbox)
    with clock.stage("setup"):
        target = open_target(kind, home.emulator_dir)
        packer = find_packer()
    if target.sandbox:
        progress(SANDBOX_NOTICE.format(endpoint=target.endpoint, catalog=home.catalog_path("sandbox")))
        from imagefactory.sandbox.leftovers import report

        report(home, progress)  # what crashed builds left, and the command that removes it
    else:
        progress(f"AWS: account {target.account}; results go to {home.catalog_path('aws')}")
    if opts.regions:
        check_regions(opts.regions)
    extra_ca = _extra_ca(opts.extra_ca)
    with clock.stage("resolve"):
        found = checkout(home, opts.repo, ref=opts.ref, name=opts.name, progress=progress)
    with clock.stage("derive"):
        recipe, recipe_path, notes = bake_recipe(home, found, regions=opts.regions, python=opts.python,
                                                 default=python_default(target.kind), progress=progress)
        check_regions(recipe.image.regions)
    dataplan = plan(target.kind, api_only=opts.api_only, supported=_sandbox_supported(target))
    if dataplan.notice:
        progress(dataplan.notice)
        notes.append(dataplan.notice)
    if target.sandbox and dataplan.provision:
        check_sandbox_needs(preflight(recipe, target="sandbox", rehearse=rehearsal(home, recipe, found.path)))
    inputs = (environment_inputs(recipe, found.path, environment_stages_digest(home.packer_dir))
              if dataplan.provision else None)
    start = _start(home, target, recipe, opts.parent, provision=dataplan.provision, inputs=inputs or {})
    line = start.line(recipe.rebuild.max_chain)
    if line:
        progress(line)
        notes.append(line)
    if opts.resolve and start.image is None:  # an incremental build installs no packages: its parent's stay
        with clock.stage("packages"):
            _check_packages(home, recipe, found, progress)
    build_id = new_build_id()
    job = Job(home=home, target=target, packer=packer, recipe=recipe, found=found, recipe_path=recipe_path,
               build_id=build_id,
               build_dir=home.builds_dir(target.kind) / recipe.name / build_id, provision=dataplan.provision,
               extra_ca=extra_ca, ssh_source=caller_cidr(target), clock=clock, progress=progress, inputs=inputs,
               parent=start.image, parent_rootfs=start.rootfs)
    job.check_values()
    build = job.record(job.run())
    progress(f"baked {recipe.name} build {build_id} ({target.kind}):")
    for region, ami in sorted(build.amis.items()):
        progress(f"  {region:<16} {ami}")
    for line in proof_lines(build.image_manifest or {}):  # what the smoke test measured in the image
        progress(line)
    used = (build.image_manifest or {}).get("disk_used_bytes")
    if isinstance(used, int):  # measured in the image by 85-manifest (provisioned builds)
        progress(image_storage(load_table(), used, sorted(build.amis)))
    cat_path = home.catalog_path(target.kind)
    progress(f"catalog: {cat_path} (invoke catalog.show {recipe.name})")
    return BakeResult(image=recipe.name, build_id=build_id, target=target.kind, status="available",
                      amis=dict(build.amis), catalog_path=str(cat_path), recipe_path=str(recipe_path),
                      build_dir=str(job.build_dir), notes=tuple(notes), timings=clock.timings,
                      provisioned=dataplan.provision, parent_build=build.parent_build)


@dataclass(frozen=True)
class _Begin:
    """Where the build starts: a parent's image (and, in the sandbox, its packed image), or the base image."""

    image: ParentImage | None = None
    rootfs: Image | None = None
    reason: str | None = None  # why a full bake, when a parent was asked for
    chain: int = 0             # incremental builds in a row, this one included

    def line(self, max_chain: int) -> str | None:
        """What the output says about it: why a full bake, or where the incremental one starts."""
        if self.reason:
            return f"full bake: {self.reason}"
        if self.image:
            return (f"incremental: from build {self.image.build_id} (AMI {self.image.source_ami}; {self.chain} of at "
                    f"most {max_chain} in a row), skipping the environment install")
        return None


def _start(home: Home, target: Target, recipe: Recipe, parent_id: str | None, *, provision: bool,
           inputs: dict[str, Any]) -> _Begin:
    """Check the parent before anything starts (incremental.decide); any failing check gives a full bake."""
    if parent_id is None:
        return _Begin()
    cat = catalog.load(home.catalog_path(target.kind))
    facts = {"image": recipe.name, "parent_id": parent_id, "provision": provision,
             "recipe_digest": recipe.digest(), "inputs": inputs, "max_chain": recipe.rebuild.max_chain}
    start = decide(cat, **facts, amis=None)
    if start.parent is not None:
        start = decide(cat, **facts, amis=observe_amis(target, start.parent, recipe.image.regions))
    if start.parent is None:
        return _Begin(reason=start.reason)
    parent, region = start.parent, recipe.image.regions[0]
    rootfs = None
    if target.sandbox:
        try:
            rootfs = parent_image(home, parent.id)
        except Missing as gone:
            return _Begin(reason=f"parent build {parent.id}'s image is gone ({gone.message.partition(': ')[2]})")
    image = ParentImage(build_id=parent.id, source_ami=parent.amis[region],
                        base_ami=parent.base_ami.get(region, ""), base_ami_name=parent.base_ami_name or "")
    return _Begin(image=image, rootfs=rootfs, chain=start.chain)


def _sandbox_supported(target: Target) -> tuple[bool, str]:
    if not target.sandbox:
        return True, "aws"
    from imagefactory.sandbox.host import sandbox_supported

    return sandbox_supported()


def _extra_ca(option: str | None) -> Path | None:
    value = option or os.environ.get("IMAGEFACTORY_EXTRA_CA")
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file() or "-----BEGIN CERTIFICATE-----" not in path.read_text(errors="replace"):
        raise FactoryError(f"extra CA bundle {path} is not a PEM certificate file",
                           "pass --extra-ca with your proxy's CA certificate (PEM)")
    return path


def _check_packages(home: Home, recipe: Recipe, found: Checkout, progress: Progress) -> None:
    """Resolve the pip part for the recipe's Python before anything is spent; stop on a conflict."""
    outcome = resolve_check(home, recipe, found.path)
    if not outcome.ok:
        raise ResolveError(f"{home.recipe_path(recipe.name)}: packages do not resolve for Python "
                           f"{recipe.environment.python.version}: {outcome.message}",
                           f"{outcome.hint} (in the recipe), or bake with --no-resolve")
    progress(f"packages: {outcome.message}" if not outcome.pins else
             f"packages: {len(outcome.pins)} resolve for Python {recipe.environment.python.version} on linux x86_64")

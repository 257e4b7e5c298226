"""The bake pipeline as one function: repo -> recipe -> rendered Packer template -> AMIs -> catalog.

Every stage is timed (the benchmark reads `BakeResult.timings`). A failure after Packer starts always
ends the same way: Packer cleans up what it created, any AMI still tagged with this build id is removed,
and the catalog records a failed (or interrupted) build; what the catalog held before is untouched.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imagefactory import __version__, catalog
from imagefactory.bases import BASES
from imagefactory.build_machine import check_sandbox_needs, pack_image, plan, sandbox_machine
from imagefactory.catalog import Build
from imagefactory.checkouts import checkout
from imagefactory.cloud import images
from imagefactory.cloud.target import SANDBOX_NOTICE, Target, check_regions, choose_target, open_target, python_default
from imagefactory.errors import BakeInterrupted, FactoryError, PackerError, ResolveError
from imagefactory.home import Home
from imagefactory.packer import Packer, find_packer
from imagefactory.recipe import Recipe
from imagefactory.recipe_commands import bake_recipe, rehearsal, resolve_check
from imagefactory.render import Features, SshEndpoint, packer_vars, template_files, write_build_dir
from imagefactory.repo import Checkout

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Clock:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - started, 4)


def new_build_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def bake(home: Home, opts: BakeOptions, progress: Progress) -> BakeResult:
    clock = _Clock()
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
        from imagefactory.provision import preflight

        check_sandbox_needs(preflight(recipe, target="sandbox", rehearse=rehearsal(home, recipe, found.path)))
    if opts.resolve:
        with clock.stage("packages"):
            _check_packages(home, recipe, found, progress)
    build_id = new_build_id()
    job = _Job(home=home, target=target, packer=packer, recipe=recipe, found=found, recipe_path=recipe_path,
               build_id=build_id,
               build_dir=home.builds_dir(target.kind) / recipe.name / build_id, provision=dataplan.provision,
               extra_ca=extra_ca, clock=clock, progress=progress)
    job.values(None)  # refuse unsafe values before anything is started
    build = job.record(job.run())
    progress(f"baked {recipe.name} build {build_id} ({target.kind}):")
    for region, ami in sorted(build.amis.items()):
        progress(f"  {region:<16} {ami}")
    cat_path = home.catalog_path(target.kind)
    progress(f"catalog: {cat_path} (invoke catalog.show {recipe.name})")
    return BakeResult(image=recipe.name, build_id=build_id, target=target.kind, status="available",
                      amis=dict(build.amis), catalog_path=str(cat_path), recipe_path=str(recipe_path),
                      build_dir=str(job.build_dir), notes=tuple(notes), timings=clock.timings,
                      provisioned=dataplan.provision)


@dataclass
class _Job:
    """One build: render, validate, run Packer (through a sandbox machine when provisioning there),
    then record; on any failure, clean up and record the failure."""

    home: Home
    target: Target
    packer: Packer
    recipe: Recipe
    found: Checkout
    recipe_path: Path
    build_id: str
    build_dir: Path
    provision: bool
    extra_ca: Path | None
    clock: _Clock
    progress: Progress

    def values(self, ssh: SshEndpoint | None) -> dict[str, Any]:
        scripts: tuple[list[str], list[str]] = ([], [])
        if self.provision:
            from imagefactory.provision import stage_scripts

            before, after = stage_scripts(self.home.packer_dir)
            scripts = ([f"provision/scripts/{p.name}" for p in before], [f"provision/scripts/{p.name}" for p in after])
        return packer_vars(self.recipe, build_id=self.build_id, target=self.target.kind,
                           factory_version=__version__, endpoint=self.target.endpoint, ssh=ssh, scripts=scripts)

    def render(self, ssh: SshEndpoint | None) -> Path:
        if self.provision:
            from imagefactory.provision import provision_config, stage_provision_dir

            config = provision_config(self.recipe, build_id=self.build_id, packer_version=self.packer.caps.text,
                                      factory_version=__version__, target=self.target.kind, autostop_minutes=None,
                                      kernel_name=self.recipe.name)
            stage_provision_dir(self.build_dir, self.recipe, config, self.found.path, self.extra_ca,
                                packer_dir=self.home.packer_dir)
        features = Features(caps=self.packer.caps, target=self.target.kind, provision=self.provision)
        files = template_files(features, self.home.packer_dir / "templates")
        return write_build_dir(self.build_dir, files, self.values(ssh))

    def packer_run(self, ssh: SshEndpoint | None) -> dict[str, str]:
        from imagefactory import packer as packer_mod

        with self.clock.stage("render"):
            var_file = self.render(ssh)
        self.progress(f"packer {self.packer.caps.text}: building {self.recipe.name} {self.build_id} in "
                      f"{', '.join(self.recipe.image.regions)} (log: {self.build_dir / 'packer.log'})")
        env = self.target.packer_env()
        with self.clock.stage("validate"):
            packer_mod.init(self.packer, self.build_dir, env, self.progress)
            packer_mod.validate(self.packer, self.build_dir, var_file, env)
        with self.clock.stage("build"):
            outcome = packer_mod.build(self.packer, self.build_dir, var_file, env,
                                       lambda line: self.progress(f"  {line}"))
        if not outcome.ok:
            detail = outcome.errors[-1] if outcome.errors else "see the log"
            raise PackerError(f"packer build failed: {detail.splitlines()[0][:300]}",
                              f"full log: {outcome.log_path}")
        return outcome.amis

    def run(self) -> dict[str, str]:
        """Packer's AMIs per region. Everything started here is stopped on every path."""
        try:
            if not (self.target.sandbox and self.provision):
                return self.packer_run(None)
            with self.clock.stage("machine"), sandbox_machine(
                    self.target, self.recipe, self.build_id, self.build_dir, extra_ca=self.extra_ca,
                    progress=self.progress) as (ssh, rootfs):
                amis = self.packer_run(ssh)
            with self.clock.stage("pack"):
                pack_image(self.home, rootfs, self.build_id, self.progress)
            return amis
        except BaseException as exc:
            self.fail(exc)
            raise

    def base_build(self) -> Build:
        env = self.recipe.environment
        return Build(id=self.build_id, created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), status="failed",
                     target=self.target.kind, account=self.target.account, commit=self.found.commit,
                     ref=self.found.ref, recipe_digest=self.recipe.digest(), python=env.python.version,
                     python_override=env.python.source == "override", packer_version=self.packer.caps.text,
                     factory_version=__version__, build_dir=str(self.build_dir), provisioned=self.provision)

    def entry(self) -> dict[str, str]:
        """The image's catalog fields, recorded with every build (available or failed)."""
        return {"name": self.recipe.name, "repo": self.found.url,
                "recipe": _rel(self.recipe_path, self.home.root),
                "recipe_digest": self.recipe.digest()}

    def record(self, amis: dict[str, str]) -> Build:
        cat_path = self.home.catalog_path(self.target.kind)
        try:
            with self.clock.stage("record"):
                build = _verified(self.target, self.recipe, self.base_build(), amis)
                manifest = self.build_dir / "image-manifest.json"
                if manifest.exists():
                    build = replace(build, image_manifest=json.loads(manifest.read_text()))
                catalog.update(cat_path, lambda c: catalog.record(c, build=build, **self.entry()))
        except BaseException as exc:
            self.fail(exc)
            raise
        return build

    def fail(self, exc: BaseException) -> None:
        _fail(self.target, self.recipe, self.base_build(), self.entry(), self.home.catalog_path(self.target.kind), exc,
              self.progress)


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


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _check_packages(home: Home, recipe: Recipe, found: Checkout, progress: Progress) -> None:
    """Resolve the pip part for the recipe's Python before anything is spent; stop on a conflict."""
    outcome = resolve_check(home, recipe, found.path)
    if not outcome.ok:
        raise ResolveError(f"{home.recipe_path(recipe.name)}: packages do not resolve for Python "
                           f"{recipe.environment.python.version}: {outcome.message}",
                           "fix the pins or the Python version in the recipe, or bake with --no-resolve")
    progress(f"packages: {outcome.message}" if not outcome.pins else
             f"packages: {len(outcome.pins)} resolve for Python {recipe.environment.python.version} on linux x86_64")


def _verified(target: Target, recipe: Recipe, build: Build, amis: dict[str, str]) -> Build:
    """Check every AMI exists and carries this build's id; find the base image in every region."""
    if set(amis) != set(recipe.image.regions):
        raise PackerError(f"Packer reported AMIs in {sorted(amis)}, expected {list(recipe.image.regions)}",
                          f"see {build.build_dir}/packer.log")
    source_region = recipe.image.regions[0]
    base_name = None
    for region, ami in amis.items():
        tags = images.tags_of(images.describe(target, region, ami))
        if tags.get("imagefactory:build-id") != build.id:
            raise PackerError(f"AMI {ami} in {region} is not tagged with build {build.id}", "see the Packer log")
        if region == source_region:
            base_name = tags.get("imagefactory:base-ami-name")
    owner = BASES[recipe.image.base].owner
    base = images.base_by_name(target, recipe.image.regions, base_name, owner) if base_name else {}
    return replace(build, status="available", amis=dict(amis), base_ami=base, base_ami_name=base_name)


def _fail(target: Target, recipe: Recipe, build: Build, entry: dict[str, str], cat_path: Path,
          exc: BaseException, progress: Progress) -> None:
    """Remove what the build left in the cloud and record it as failed/interrupted."""
    interrupted = isinstance(exc, (BakeInterrupted, KeyboardInterrupt))
    message = exc.message if isinstance(exc, FactoryError) else f"{type(exc).__name__}: {exc}"
    try:
        images.sweep_build(target, recipe.image.regions, build.id, progress)
    except Exception as sweep_exc:  # report, but never hide the original failure
        progress(f"cleanup: could not check for leftovers of {build.id}: {sweep_exc}")
    failed = replace(build, status="interrupted" if interrupted else "failed", error=message[:500])
    catalog.update(cat_path, lambda c: catalog.record(c, build=failed, **entry))
    progress(f"recorded {failed.status} build {build.id} in {cat_path}")

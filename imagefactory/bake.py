"""The bake pipeline as one function: repo -> recipe -> rendered Packer template -> AMIs -> catalog.

Every stage is timed (the benchmark reads `BakeResult.timings`). A failure after the build starts always
ends the same way (`bake_failure`): Packer is cancelled and cleans up what it created, any AMI still
tagged with this build id is removed, and the catalog records a failed (or interrupted) build, saying
what happened; what the catalog held before is untouched. The build folder is the owner's only (0700)
and never keeps the copy of the repository Packer uploaded.
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
from typing import Any, NoReturn

from imagefactory import __version__, catalog
from imagefactory.bake_failure import emulator_watch, finish_failed
from imagefactory.bases import BASES
from imagefactory.catalog import Build
from imagefactory.cloud import images
from imagefactory.cloud.instances import caller_cidr
from imagefactory.cloud.target import SANDBOX_NOTICE, Target, check_regions, choose_target, open_target
from imagefactory.dataplane import check_sandbox_needs, pack_image, plan, sandbox_machine
from imagefactory.errors import FactoryError, PackerError, RecipeError, ResolveError
from imagefactory.home import Home
from imagefactory.packer import Packer, find_packer
from imagefactory.provision import (
    Provisioners,
    drop_repo_copy,
    preflight,
    provision_config,
    provisioners,
    stage_provision_dir,
)
from imagefactory.recipe import PythonSpec, Recipe, RepoTree, Source, derive, load_recipe, write_recipe
from imagefactory.recipe_commands import resolve_check
from imagefactory.render import Features, SshEndpoint, make_build_dir, packer_vars, template_files, write_build_dir
from imagefactory.repo import Checkout
from imagefactory.smoke import smoke_packages
from imagefactory.sourcing import checkout, package_index

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
        self.current: str | None = None  # the stage running now, or the last one that ran

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started, self.current = time.perf_counter(), name
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
    else:
        progress(f"AWS: account {target.account}; results go to {home.catalog_path('aws')}")
    if opts.regions:
        check_regions(opts.regions)
    extra_ca = _extra_ca(opts.extra_ca)
    with clock.stage("resolve"):
        found = checkout(home, opts.repo, ref=opts.ref, name=opts.name, progress=progress)
    with clock.stage("derive"):
        recipe, recipe_path, notes = _recipe(home, opts, found, progress)
        check_regions(recipe.image.regions)
    dataplan = plan(target.kind, api_only=opts.api_only, supported=_sandbox_supported(target))
    if dataplan.notice:
        progress(dataplan.notice)
        notes.append(dataplan.notice)
    if target.sandbox and dataplan.provision:
        check_sandbox_needs(preflight(recipe, target="sandbox"))
    if opts.resolve:
        with clock.stage("packages"):
            _check_packages(home, recipe, found, progress)
    build_id = new_build_id()
    job = _Job(home=home, target=target, packer=packer, recipe=recipe, found=found, recipe_path=recipe_path,
               build_id=build_id,
               build_dir=home.builds_dir(target.kind) / recipe.name / build_id, provision=dataplan.provision,
               extra_ca=extra_ca, ssh_source=caller_cidr(target), clock=clock, progress=progress)
    job.check_values()
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
    ssh_source: str  # the only address the build instance's temporary security group lets ssh in from
    clock: _Clock
    progress: Progress

    def values(self, ssh: SshEndpoint | None) -> dict[str, Any]:
        steps = provisioners(self.home.packer_dir) if self.provision else Provisioners()
        return packer_vars(self.recipe, build_id=self.build_id, target=self.target.kind,
                           factory_version=__version__, endpoint=self.target.endpoint, ssh=ssh,
                           provisioners=steps, ssh_sources=(self.ssh_source,))

    def check_values(self) -> dict[str, Any]:
        """Refuse an unsafe value (RenderError) before anything is started; returns the checked values."""
        return self.values(None)

    def render(self, ssh: SshEndpoint | None) -> Path:
        if self.provision:
            config = provision_config(self.recipe, build_id=self.build_id, packer_version=self.packer.caps.text,
                                      factory_version=__version__, target=self.target.kind, autostop_minutes=None,
                                      kernel_name=self.recipe.name,
                                      smoke=smoke_packages(self.recipe, RepoTree.scan(self.found.path)))
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
        watch = emulator_watch(self.home.emulator_dir) if self.target.sandbox else None
        with self.clock.stage("build"):
            outcome = packer_mod.build(self.packer, self.build_dir, var_file, env,
                                       lambda line: self.progress(f"  {line}"), abort=watch)
        if not outcome.ok:
            detail = outcome.errors[-1] if outcome.errors else "see the log"
            raise PackerError(f"packer build failed: {detail.splitlines()[0][:300]}",
                              f"full log: {outcome.log_path}")
        return outcome.amis

    def run(self) -> dict[str, str]:
        """Packer's AMIs per region. Everything started here is stopped on every path."""
        try:
            make_build_dir(self.build_dir)
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
        finally:
            drop_repo_copy(self.build_dir)

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
        return build

    def fail(self, exc: BaseException) -> NoReturn:
        """Clean up, record what happened, and raise it as one error (see bake_failure)."""
        error = finish_failed(self.target, self.recipe.image.regions, self.base_build(), self.entry(),
                              self.home.catalog_path(self.target.kind), exc, stage=self.clock.current,
                              emulator_dir=self.home.emulator_dir, progress=self.progress)
        if error is exc:
            raise exc
        raise error from exc


def _sandbox_supported(target: Target) -> tuple[bool, str]:
    if not target.sandbox:
        return True, "aws"
    from imagefactory.sandbox.rootfs import sandbox_supported

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


def _recipe(home: Home, opts: BakeOptions, found: Checkout,
            progress: Progress) -> tuple[Recipe, Path, list[str]]:
    """The recipe for this bake: the user's recipes/NAME.yaml if it exists, else a derived one (written)."""
    path = home.recipe_path(found.name)
    source = Source(repo=found.url, ref=found.ref, commit=found.commit)
    notes: list[str] = []
    if path.exists():
        recipe = load_recipe(path)
        if recipe.source.repo != found.url:
            raise RecipeError(f"{path}: field 'source.repo' is {recipe.source.repo!r}, not {found.url!r}",
                              "pass --name to bake this repo under another image name")
        progress(f"recipe: using {path} (yours to edit; 'invoke recipe --repo ... --force' re-derives it)")
        recipe = recipe.with_source(source)
    else:
        derivation = derive(RepoTree.scan(found.path), name=found.name, source=source,
                            regions=opts.regions, index=package_index(home))
        recipe = derivation.recipe
        write_recipe(path, recipe)
        notes.extend(derivation.notes)
        progress(f"recipe: derived and wrote {path}")
        for line in derivation.report().splitlines():
            progress(f"  {line}")
    if opts.regions:
        recipe = recipe.with_regions(opts.regions)
    if opts.python:
        overridden = recipe.with_python(PythonSpec(opts.python, "override", "--python given on the command line"))
        recipe = Recipe.from_dict(overridden.to_dict(), "--python")  # the override, validated like a recipe file
    return recipe, path, notes


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

"""One build of a bake: render the templates, validate, run Packer (through a sandbox build machine when
the sandbox provisions), check and record the AMIs; on any failure or cancel, `bake_failure` ends it.

The build folder is the owner's only (0700) and never keeps the copy of the repository Packer uploaded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from imagefactory import __version__, catalog, contract
from imagefactory import packer as packer_mod
from imagefactory.bake_failure import emulator_watch, finish_failed
from imagefactory.base_images import BASES
from imagefactory.build_machine import pack_image, sandbox_machine
from imagefactory.catalog import Build
from imagefactory.cloud import images
from imagefactory.cloud.target import Target
from imagefactory.errors import PackerError
from imagefactory.home import Home
from imagefactory.packer import Packer
from imagefactory.provision import (
    Provisioners,
    drop_repo_copy,
    provision_config,
    provisioners,
    stage_provision_dir,
)
from imagefactory.recipe import Recipe, RepoTree
from imagefactory.recipe.syslibs import load_table
from imagefactory.render import (
    Features,
    ParentImage,
    SshEndpoint,
    deprecation_time,
    make_build_dir,
    packer_vars,
    template_files,
    write_build_dir,
)
from imagefactory.repo import Checkout
from imagefactory.sandbox.images import Image
from imagefactory.sandbox.trees import cache_dir as tree_cache
from imagefactory.smoke import smoke_config
from imagefactory.tags import BASE_AMI_NAME_TAG, BUILD_ID_TAG
from imagefactory.timestamps import stamp

Progress = Callable[[str], None]


class Clock:
    """Times each stage; remembers the innermost stage a failure (or Ctrl-C) came out of."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.failed_in: str | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            self.failed_in = self.failed_in or name
            raise
        finally:
            self.timings[name] = round(time.perf_counter() - started, 4)


@dataclass
class Job:
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
    clock: Clock
    progress: Progress
    inputs: dict[str, Any] | None = None  # the environment inputs, recorded in the manifest (incremental.py)
    parent: ParentImage | None = None     # an incremental build: start from this build's image
    parent_rootfs: Image | None = None    # ... in the sandbox: its image (sandbox.images)

    def values(self, ssh: SshEndpoint | None) -> dict[str, Any]:
        steps = (provisioners(self.home.packer_dir, incremental=self.parent is not None) if self.provision
                 else Provisioners())
        return packer_vars(self.recipe, build_id=self.build_id, target=self.target.kind,
                           factory_version=__version__, endpoint=self.target.endpoint, ssh=ssh,
                           provisioners=steps, ssh_sources=(self.ssh_source,),
                           deprecate_at=deprecation_time(self.recipe, datetime.now(UTC)), parent=self.parent)

    def check_values(self) -> dict[str, Any]:
        """Refuse an unsafe value (RenderError) before anything is started; returns the checked values."""
        return self.values(None)

    def render(self, ssh: SshEndpoint | None) -> Path:
        if self.provision:
            config = provision_config(self.recipe, build_id=self.build_id, packer_version=self.packer.caps.text,
                                      factory_version=__version__, target=self.target.kind, autostop_minutes=None,
                                      kernel_name=self.recipe.name,
                                      smoke=smoke_config(self.recipe, RepoTree.scan(self.found.path),
                                                         load_table(self.home.root)),
                                      parent_build=self.parent.build_id if self.parent else None,
                                      environment_inputs=self.inputs)
            stage_provision_dir(self.build_dir, self.recipe, config, self.found.path, self.extra_ca,
                                packer_dir=self.home.packer_dir)
        features = Features(caps=self.packer.caps, target=self.target.kind, provision=self.provision,
                            incremental=self.parent is not None)
        files = template_files(features, self.home.packer_dir / "templates")
        return write_build_dir(self.build_dir, files, self.values(ssh))

    def packer_run(self, ssh: SshEndpoint | None) -> dict[str, str]:
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
            raise PackerError(f"packer build failed: {outcome.reason()[:300]}",
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
                    progress=self.progress, image=self.parent_rootfs,
                    trees=tree_cache(self.home), stage=self.clock.stage) as (ssh, rootfs):
                amis = self.packer_run(ssh)
            with self.clock.stage("pack"):
                pack_image(self.home, rootfs, self.build_id, self.parent_rootfs, self.progress)
            return amis
        except BaseException as exc:
            self.fail(exc)
        finally:
            drop_repo_copy(self.build_dir)

    def base_build(self) -> Build:
        env = self.recipe.environment
        return Build(id=self.build_id, created=stamp(datetime.now(UTC)), status="failed",
                     target=self.target.kind, account=self.target.account, commit=self.found.commit,
                     ref=self.found.ref, recipe_digest=self.recipe.digest(), python=env.python.version,
                     python_override=env.python.source == "override", packer_version=self.packer.caps.text,
                     factory_version=__version__, build_dir=str(self.build_dir), provisioned=self.provision,
                     contract_digest=contract.digest(self.home.packer_dir),
                     parent_build=self.parent.build_id if self.parent else None)

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
                              self.home.catalog_path(self.target.kind), exc, stage=self.clock.failed_in,
                              emulator_dir=self.home.emulator_dir, progress=self.progress)
        if error is exc:
            raise exc
        raise error from exc


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _verified(target: Target, recipe: Recipe, build: Build, amis: dict[str, str]) -> Build:
    """Check every AMI exists and carries this build's id; find the base image in every region."""
    if set(amis) != set(recipe.image.regions):
        raise PackerError(f"Packer reported AMIs in {sorted(amis)}, expected {list(recipe.image.regions)}",
                          f"see {build.build_dir}/packer.log")
    source_region = recipe.image.regions[0]
    base_name = None
    for region, ami in amis.items():
        tags = images.tags_of(images.describe(target, region, ami))
        if tags.get(BUILD_ID_TAG) != build.id:
            raise PackerError(f"AMI {ami} in {region} is not tagged with build {build.id}", "see the Packer log")
        if region == source_region:
            base_name = tags.get(BASE_AMI_NAME_TAG)
    owner = BASES[recipe.image.base].owner
    base = images.base_by_name(target, recipe.image.regions, base_name, owner) if base_name else {}
    return replace(build, status="available", amis=dict(amis), base_ami=base, base_ami_name=base_name)

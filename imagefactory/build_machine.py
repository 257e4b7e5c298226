"""The build machine: where a build's provisioning runs, and how Packer gets there.

On AWS, Packer provisions the EC2 build instance over SSH with its own temporary key. In the sandbox,
the emulator has no machines, so the build instance's SSH is a local Debian rootfs (`BuildRoot`) with
sshd on a loopback port inside a container (`sandbox.container`), reached with a key imported into the
emulator: the *same* template and scripts run for real. `plan` decides (pure); `sandbox_machine` and `pack_image` do it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from imagefactory import proc
from imagefactory.cloud.target import Target
from imagefactory.errors import SandboxError
from imagefactory.home import Home, rootfs_cache_dir
from imagefactory.recipe.model import Recipe
from imagefactory.render import SshEndpoint
from imagefactory.sandbox import images
from imagefactory.sandbox.archive import image_path
from imagefactory.sandbox.images import Image

Progress = Callable[[str], None]
Stage = Callable[[str], AbstractContextManager[None]]


@contextmanager
def _untimed(name: str) -> Iterator[None]:
    yield


@dataclass(frozen=True)
class Plan:
    provision: bool
    notice: str | None = None


def plan(target_kind: str, *, api_only: bool, supported: tuple[bool, str]) -> Plan:
    """Provision for real on AWS always; in the sandbox unless --api-only or this machine cannot."""
    if target_kind != "sandbox":
        return Plan(provision=True)
    if api_only:
        return Plan(False, "API-only sandbox bake (--api-only): AMIs are registered, nothing is installed")
    ok, why = supported
    if not ok:
        return Plan(False, f"API-only sandbox bake: {why}; AMIs are registered, nothing is installed")
    return Plan(True)


def _build_key(build_dir: Path) -> tuple[Path, str]:
    key = build_dir / "build-key"
    proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "imagefactory-build", "-f", str(key)], timeout=30)
    key.chmod(0o400)
    return key, (build_dir / "build-key.pub").read_text().strip()


@contextmanager
def sandbox_machine(target: Target, recipe: Recipe, build_id: str, build_dir: Path, *,
                    extra_ca: Path | None, progress: Progress,
                    image: Image | None = None, trees: Path | None = None,
                    stage: Stage = _untimed) -> Iterator[tuple[SshEndpoint, Path]]:
    """A running build root for Packer to provision: yields its SSH endpoint and the rootfs path. It starts
    from the base rootfs, or from `image` (an incremental build: the parent build's image; with
    `trees`, the tree cache, as an overlay on its cached unpacked tree). Starting and stopping the build
    root are timed as `stage("root-start")` and `stage("root-stop")`.

    The build key is imported into the emulator (Packer launches the emulated instance with it) and
    removed afterwards; the rootfs's processes and mounts are gone when this exits, on any path.
    """
    from imagefactory.sandbox import leftovers
    from imagefactory.sandbox.buildroot import BuildRoot, record_owner

    build_dir.mkdir(parents=True, exist_ok=True)
    private_key, public_key = _build_key(build_dir)
    keypair = f"{leftovers.BUILD_KEY_PREFIX}{build_id}"
    region = recipe.image.regions[0]
    ec2 = target.client("ec2", region)
    record_owner(build_dir)
    leftovers.record_cloud(build_dir, region=region, key_pair=keypair)  # found again if this process dies
    ec2.import_key_pair(KeyName=keypair, PublicKeyMaterial=public_key.encode())
    try:
        with ExitStack() as running:
            with stage("root-start"):
                root = running.enter_context(BuildRoot(
                    rootfs_cache_dir(), build_dir, login_user=recipe.image.login_user, authorized_key=public_key,
                    extra_ca=extra_ca, progress=progress, image=image, trees=trees))
            if image is not None and trees is not None:
                progress(f"sandbox: build root on the {'cached' if root.served_from_cache else 'newly unpacked'} "
                         f"tree of build {image.build_id}'s image (overlay)")
            progress(f"sandbox: build root {root.root} serving ssh on 127.0.0.1:{root.port}")
            yield SshEndpoint("127.0.0.1", root.port, keypair, str(private_key)), root.root
            with stage("root-stop"):
                running.close()
    finally:
        ec2.delete_key_pair(KeyName=keypair)
        leftovers.forget_cloud(build_dir)


def parent_image(home: Home, build_id: str) -> Image:
    """The image of sandbox build `build_id` (an incremental build starts from it); `images.Missing` says
    which packed archive of it is not there."""
    return images.load(image_path(home, build_id).parent, build_id)


def pack_image(home: Home, rootfs: Path, build_id: str, parent: Image | None, progress: Progress) -> Path:
    """Pack the provisioned rootfs as the sandbox AMIs' content. A plain tree (a full build's) is packed whole
    and then kept in the tree cache (an incremental build from this one starts on it). An overlay build root
    (an incremental build's, on `parent`'s cached tree) is unmounted and only its upper layer packed, as a
    layer over the parent's image; the layer stays in the tree cache (a build from this one starts on it)."""
    from imagefactory.sandbox import trees
    from imagefactory.sandbox.teardown import mounts_under

    folder = image_path(home, build_id).parent
    if mounts_under(rootfs):
        assert parent is not None, "an overlay build root is an incremental build's"
        info = trees.pack_layer(trees.cache_dir(home), parent, rootfs, folder, build_id)
        progress(f"sandbox: image packed to {info.path} ({info.packed_bytes / 1e6:.1f} MB: a layer of "
                 f"{info.unpacked_bytes / 1e6:.1f} MB of files over build {parent.build_id}'s image)")
        return info.path
    info = images.pack_whole(rootfs, folder, build_id)
    trees.keep(trees.cache_dir(home), images.whole(info.path), rootfs)
    progress(f"sandbox: image packed to {info.path} ({info.packed_bytes / 1e6:.0f} MB, "
             f"{info.unpacked_bytes / 1e6:.0f} MB unpacked)")
    return info.path


def check_sandbox_needs(problems: list[str]) -> None:
    if problems:
        raise SandboxError("the sandbox cannot build this recipe: " + "; ".join(problems),
                           "bake on AWS for the real thing, or rehearse as the message says")

"""What the emulator's backends start with: Canonical's Ubuntu images, with the same IDs on every start.

Runs inside the server process only (it imports moto). `seed_canonical` puts Canonical-owned Ubuntu LTS
images (`ubuntu_images.json`) into every EC2 region backend, with IDs derived from a hash of region +
name, so the same base AMI has the same ID on every start and catalog entries that record it stay valid.
What users made is kept by `sandbox.state`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami

from imagefactory.sandbox import org

CANONICAL_OWNER_ID = "099720109477"
_IMAGES_FILE = Path(__file__).with_name("ubuntu_images.json")


# ---------------------------------------------------------------------------------------------- seeding
@dataclass(frozen=True)
class UbuntuImage:
    """One Canonical Ubuntu server image as published on AWS (the same in every region)."""

    name: str
    description: str
    architecture: str
    creation_date: datetime
    boot_mode: str


def _build_date(serial: str) -> datetime:
    """`20240207.1` -> 2024-02-07 12:00 + 1 h: respins sort after the first build of the same day."""
    day, _, respin = serial.partition(".")
    return datetime.strptime(day, "%Y%m%d").replace(hour=12 + int(respin or 0))


@cache
def ubuntu_images() -> tuple[UbuntuImage, ...]:
    """Every image named by `ubuntu_images.json`: each release x serial x architecture."""
    data = json.loads(_IMAGES_FILE.read_text(encoding="utf-8"))
    images = []
    for release in data["releases"]:
        for serial in release["serials"]:
            built = _build_date(serial)
            for arch, aws_arch in data["architectures"].items():
                series, version = release["series"], release["version"]
                images.append(
                    UbuntuImage(
                        name=f"ubuntu/images/{release['family']}/ubuntu-{series}-{version}-{arch}-server-{serial}",
                        description=f"Canonical, Ubuntu, {version} LTS, {arch} {series} image build on "
                        f"{built:%Y-%m-%d}",
                        architecture=aws_arch,
                        creation_date=built,
                        boot_mode="uefi" if arch == "arm64" else "uefi-preferred",
                    )
                )
    return tuple(images)


def _hashed_id(prefix: str, *parts: str) -> str:
    return f"{prefix}-{hashlib.sha256(':'.join(parts).encode()).hexdigest()[:17]}"


def image_id(region: str, name: str) -> str:
    """The seeded image's ID: the same for the same region and name on every start."""
    return _hashed_id("ami", region, name)


def rekey_snapshot(backend: Any, ami: Ami, snapshot_id: str) -> None:
    """Give the root snapshot moto made for `ami` a chosen ID instead of a random one."""
    snapshot = backend.snapshots.pop(ami.ebs_snapshot.id)
    snapshot.id = snapshot_id
    backend.snapshots[snapshot_id] = snapshot


def _seed_region(backend: Any, region: str, images: tuple[UbuntuImage, ...] | None = None) -> set[str]:
    seeded = set()
    for image in ubuntu_images() if images is None else images:
        ami_id = image_id(region, image.name)
        ami = Ami(
            backend,
            ami_id,
            name=image.name,
            description=image.description,
            owner_id=CANONICAL_OWNER_ID,
            public=True,
            virtualization_type="hvm",
            architecture=image.architecture,
            creation_date=image.creation_date,
            image_location=f"{CANONICAL_OWNER_ID}/{image.name}",
            hypervisor="xen",
            root_device_type="ebs",
            root_device_name="/dev/sda1",
            region_name=f"{region}a",
            snapshot_description=image.name,
            boot_mode=image.boot_mode,
        )
        rekey_snapshot(backend, ami, _hashed_id("snap", region, image.name))
        backend.amis[ami_id] = ami
        seeded.add(ami_id)
    return seeded


def seed_canonical(account_id: str) -> dict[str, set[str]]:
    """Seed every EC2 region backend of `account_id`; returns the seeded image IDs per region."""
    account = ec2_backends[account_id]
    org.seed(account_id)
    return {region: _seed_region(account[region], region) for region in account.regions}


def release_image(version: str, serial: str) -> tuple[UbuntuImage, ...]:
    """The images (every architecture) Canonical would publish for Ubuntu `version` as build `serial`
    (YYYYMMDD[.N]); ValueError for a release the sandbox does not know or a malformed serial."""
    data = json.loads(_IMAGES_FILE.read_text(encoding="utf-8"))
    release = next((r for r in data["releases"] if r["version"] == version), None)
    if release is None:
        known = ", ".join(r["version"] for r in data["releases"])
        raise ValueError(f"no Ubuntu {version} in the sandbox; known: {known}")
    built = _build_date(serial)
    return tuple(UbuntuImage(
        name=f"ubuntu/images/{release['family']}/ubuntu-{release['series']}-{version}-{arch}-server-{serial}",
        description=f"Canonical, Ubuntu, {version} LTS, {arch} {release['series']} image build on {built:%Y-%m-%d}",
        architecture=aws_arch, creation_date=built, boot_mode="uefi" if arch == "arm64" else "uefi-preferred",
    ) for arch, aws_arch in data["architectures"].items())


def publish(account_id: str, version: str, serial: str) -> dict[str, list[str]]:
    """Publish a newer Canonical build of Ubuntu `version` in every region, as Canonical does every few
    weeks (rehearsing a base-image update). Such images are not seeded, so the state keeps them across
    restarts. Returns the new image IDs per region."""
    images = release_image(version, serial)
    account = ec2_backends[account_id]
    return {region: sorted(_seed_region(account[region], region, images)) for region in account.regions}

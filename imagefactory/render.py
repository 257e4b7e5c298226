"""Render the Packer templates for one build: template text from Jinja (features gated by Packer version
and build kind only), every value in a generated `imagefactory.pkrvars.json`.

This is the one place values cross into Packer, and `packer_safe` is the one filter they pass: Packer's
amazon-ebs builder re-renders ami_name, descriptions and tags as Go templates, so `{{` is refused, as are
control characters. Quotes, `${`, `%{`, `$(` and backticks are harmless in a JSON var file and pass.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2

from imagefactory import timestamps
from imagefactory.base_images import BASES
from imagefactory.errors import RenderError
from imagefactory.packer import Capabilities
from imagefactory.provision import Provisioners
from imagefactory.recipe.model import Recipe
from imagefactory.tags import (
    BASE_AMI_NAME_TAG,
    BUILD_ID_TAG,
    BUILD_ROLE_TAG,
    IMAGE_TAG,
    JUPYTER_PORT_TAG,
    LOGIN_USER_TAG,
    MANAGED_TAG,
)

VAR_FILE = "imagefactory.pkrvars.json"
TEMPLATES = ("versions", "variables", "source", "build")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
TAG_VALUE_MAX = 256
NO_PROVISIONERS = Provisioners()  # an API-only build: communicator none, nothing runs


@dataclass(frozen=True)
class Features:
    """What the template text may contain: gated by Packer's capabilities and the build's kind."""

    caps: Capabilities
    target: str          # "aws" or "sandbox"
    provision: bool      # SSH communicator + provisioners (else communicator "none")
    incremental: bool = False  # start from a parent build's AMI (source_ami) instead of the base image


@dataclass(frozen=True)
class SshEndpoint:
    """Sandbox only: where the local rootfs's sshd listens and which emulator key pair reaches it."""

    host: str
    port: int
    keypair_name: str
    private_key_file: str


@dataclass(frozen=True)
class ParentImage:
    """An incremental build's starting point: the parent build, its AMI in the build region, and the base
    image the parent was built from (recorded again as this build's base)."""

    build_id: str
    source_ami: str
    base_ami: str
    base_ami_name: str


def packer_safe(field: str, value: str) -> str:
    if "{{" in value:
        raise RenderError(f"{field} contains '{{{{', which Packer would run as a Go template: {value[:80]!r}",
                          "remove the '{{' from that value (rename the branch, tag or file)")
    if CONTROL.search(value):
        raise RenderError(f"{field} contains a control character (newline, tab, ...): {value[:80]!r}",
                          "remove it from that value")
    return value


def template_files(features: Features, templates_dir: Path) -> dict[str, str]:
    """File name -> rendered HCL text. Pure apart from reading the templates."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    context = {"caps": features.caps.flags() | {"version": features.caps.text}, "target": features.target,
               "provision": features.provision, "incremental": features.incremental}
    out: dict[str, str] = {}
    for name in TEMPLATES:
        if name == "versions" and not features.caps.plugins:
            continue
        out[f"{name}.pkr.hcl"] = env.get_template(f"{name}.pkr.hcl.j2").render(context)
    return out


def image_tags(recipe: Recipe, *, build_id: str, target: str, factory_version: str,
               parent: ParentImage | None = None) -> dict[str, str]:
    tags = dict(recipe.tags)
    tags.update({
        "Name": f"{recipe.name} {build_id}",
        IMAGE_TAG: recipe.name,
        "imagefactory:repo": recipe.source.repo,
        "imagefactory:ref": recipe.source.ref or "",
        "imagefactory:commit": recipe.source.commit,
        "imagefactory:recipe-digest": recipe.digest(),
        BUILD_ID_TAG: build_id,
        "imagefactory:factory-version": factory_version,
        "imagefactory:target": target,
        LOGIN_USER_TAG: recipe.image.login_user,  # read by `launch --ami` (owner account only:
        JUPYTER_PORT_TAG: str(recipe.jupyter.port),  # a shared AMI shows no tags to others)
        MANAGED_TAG[0]: MANAGED_TAG[1],
    })
    if parent is not None:  # a full build's base-ami tags are rendered by Packer from its source_ami_filter
        tags.update({"imagefactory:parent-build": parent.build_id, "imagefactory:base-ami": parent.base_ami,
                     BASE_AMI_NAME_TAG: parent.base_ami_name})
    for key, value in tags.items():
        packer_safe(f"tag {key!r}", key)
        packer_safe(f"tag {key!r}", value)
        if len(value) > TAG_VALUE_MAX:
            tags[key] = value[: TAG_VALUE_MAX - 1] + "…"
    return tags


def deprecation_time(recipe: Recipe, started: datetime) -> str:
    """When the build's AMIs are to be deprecated (Packer's `deprecate_at`, RFC 3339 UTC): the bake's start
    plus the recipe's `lifecycle.deprecate_after_days`."""
    return timestamps.stamp(started + timedelta(days=recipe.lifecycle.deprecate_after_days))


def packer_vars(recipe: Recipe, *, build_id: str, target: str, factory_version: str, endpoint: str | None,
                ssh_sources: tuple[str, ...], ssh: SshEndpoint | None = None,
                provisioners: Provisioners = NO_PROVISIONERS, deprecate_at: str = "",
                parent: ParentImage | None = None) -> dict[str, Any]:
    """The values of one build, for the generated var file. `ssh_sources` are the CIDRs the build
    instance's temporary security group admits ssh from (the caller's /32); `parent` makes it an
    incremental build (rendered with `Features.incremental`). Pure."""
    if not ssh_sources or any(_wide(cidr) for cidr in ssh_sources):
        raise RenderError(f"the build instance's ssh sources {list(ssh_sources)} are not single addresses",
                          "pass the caller's address as a /32 (IPv6: /128)")
    base = BASES[recipe.image.base]
    tags = image_tags(recipe, build_id=build_id, target=target, factory_version=factory_version, parent=parent)
    values: dict[str, Any] = {
        "ami_name": packer_safe("ami name", f"imagefactory/{recipe.name}/{build_id}"),
        "ami_description": packer_safe("description", f"{recipe.name} from {recipe.source.repo} "
                                                      f"at {recipe.source.commit[:12]}")[:255],
        "base_ami_name": base.name_filter,
        "base_ami_owner": base.owner,
        "build_id": build_id,
        "regions": list(recipe.image.regions),
        "tags": tags,
        "run_tags": {"Name": f"imagefactory build {build_id}", MANAGED_TAG[0]: MANAGED_TAG[1],  # Packer's build
                     BUILD_ID_TAG: build_id, BUILD_ROLE_TAG[0]: BUILD_ROLE_TAG[1]},  # instance, its disk
        "instance_type": recipe.image.build_instance_type,
        "volume_size": recipe.image.volume_gb,
        "ssh_username": recipe.image.login_user,
        "sandbox": target == "sandbox",
        "endpoint_ec2": endpoint or "",
        "ssh_source_cidrs": list(ssh_sources),
        "deprecate_at": deprecate_at,  # rendered only where the Packer in use supports it (caps.deprecate_at)
        **kms_values(recipe),
        **provisioners.values(),
        "source_ami": packer_safe("parent AMI", parent.source_ami) if parent else "",
    }
    if ssh is not None:
        values.update({"ssh_host": ssh.host, "ssh_port": ssh.port, "ssh_keypair_name": ssh.keypair_name,
                       "ssh_private_key_file": ssh.private_key_file})
    return values


def kms_values(recipe: Recipe) -> dict[str, Any]:
    """Packer's kms_key_id (the build region) and region_kms_key_ids (every copy) from image.kms_key; both
    empty without one (the AWS-managed aws/ebs key). A per-region key must name every region built."""
    regions, spec = recipe.image.regions, recipe.image
    if spec.kms_key is None:
        return {"kms_key_id": "", "region_kms_key_ids": {}}
    missing = [r for r in regions if not spec.key_for(r)]
    if missing:
        raise RenderError(f"image.kms_key names no key for {', '.join(missing)}",
                          "give a key for every region in image.regions, or one alias for all")
    if any(spec.key_for(r) in ("alias/aws/ebs",) for r in regions):
        raise RenderError("image.kms_key is alias/aws/ebs, the AWS-managed key (the default without kms_key), "
                          "which no other account can use", "name a customer-managed key, or leave kms_key out")
    return {"kms_key_id": spec.key_for(regions[0]), "region_kms_key_ids": {r: spec.key_for(r) for r in regions[1:]}}


def _wide(cidr: str) -> bool:
    try:
        network = ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        return True
    return network.prefixlen != network.max_prefixlen


def make_build_dir(build_dir: Path) -> Path:
    """The build's folder, readable by its owner only (it holds the build key and the uploaded repo)."""
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    build_dir.mkdir(mode=0o700, exist_ok=True)
    build_dir.chmod(0o700)
    return build_dir


def write_build_dir(build_dir: Path, files: Mapping[str, str], values: Mapping[str, Any]) -> Path:
    """Write the rendered templates and the var file; returns the var file's path."""
    make_build_dir(build_dir)
    for name, text in files.items():
        (build_dir / name).write_text(text)
    var_file = build_dir / VAR_FILE
    var_file.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    return var_file

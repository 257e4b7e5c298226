"""Rendering: every Packer 1.6.6 combination passes the real `packer validate` and `packer fmt -check`; the
Packer >= 1.7 render (no such Packer here) is parsed as HCL2 and its structure checked; values never reach
template text; ssh from one address only; the one filter refuses Go templates."""

from __future__ import annotations

import json
import re
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import hcl2
import pytest
from hcl2 import SerializationOptions

from imagefactory.errors import RecipeError, RenderError
from imagefactory.home import SOURCE_ROOT
from imagefactory.packer import Capabilities, find_packer
from imagefactory.provision import EXECUTE_COMMAND, MANIFEST_PATH, REMOTE_DIR, Provisioners
from imagefactory.recipe.model import Recipe, Source
from imagefactory.render import (
    VAR_FILE,
    Features,
    SshEndpoint,
    packer_safe,
    packer_vars,
    template_files,
    write_build_dir,
)

TEMPLATES = SOURCE_ROOT / "packer" / "templates"
NASTY = "x'\"${a}%{b}$(id)`id`;rm -rf /"
HCL = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


def recipe(repo: str = "https://example.org/r.git", ref: str = "main") -> Recipe:
    return Recipe(name="demo", source=Source(repo=repo, ref=ref, commit="0123456789abcdef"))


def ssh_key(tmp_path: Path) -> Path:
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def render(tmp_path: Path, target: str, provision: bool, rec: Recipe, version=(1, 6, 6)) -> Path:
    build_dir = tmp_path / f"{target}-{provision}"
    ssh = SshEndpoint("127.0.0.1", 2222, "kp", str(ssh_key(tmp_path))) if target == "sandbox" and provision else None
    files = template_files(Features(Capabilities(version), target, provision), TEMPLATES)
    (build_dir / "provision").mkdir(parents=True)
    (build_dir / "provision" / "a.sh").write_text("true\n")
    values = packer_vars(rec, build_id="b1", target=target, factory_version="0.1.0",
                         endpoint="http://127.0.0.1:1" if target == "sandbox" else None, ssh=ssh,
                         ssh_sources=("127.0.0.1/32",), provisioners=Provisioners(("provision/a.sh",),
                                                                                  ("provision/a.sh",)))
    write_build_dir(build_dir, files, values)
    return build_dir


@pytest.mark.parametrize("target", ["aws", "sandbox"])
@pytest.mark.parametrize("provision", [False, True])
def test_every_render_validates_and_is_formatted(tmp_path: Path, target: str, provision: bool) -> None:
    packer = find_packer()
    build_dir = render(tmp_path, target, provision, recipe(repo=NASTY, ref=NASTY))
    validate = subprocess.run([packer.path, "validate", f"-var-file={VAR_FILE}", "."], cwd=build_dir,
                              capture_output=True, text=True)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    fmt = subprocess.run([packer.path, "fmt", "-check", "."], cwd=build_dir, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_fmt_check_does_catch_bad_formatting(tmp_path: Path) -> None:
    packer = find_packer()
    build_dir = render(tmp_path, "aws", False, recipe())
    text = (build_dir / "source.pkr.hcl").read_text().replace("  region          =", "region=")
    (build_dir / "source.pkr.hcl").write_text(text)
    fmt = subprocess.run([packer.path, "fmt", "-check", "."], cwd=build_dir, capture_output=True, text=True)
    assert fmt.returncode != 0


def test_user_values_reach_packer_only_through_the_var_file(tmp_path: Path) -> None:
    build_dir = render(tmp_path, "sandbox", False, recipe(repo=NASTY, ref=NASTY))
    hcl = "".join(p.read_text() for p in build_dir.glob("*.pkr.hcl"))
    assert "$(id)" not in hcl and "%{b}" not in hcl and "rm -rf" not in hcl
    values = json.loads((build_dir / VAR_FILE).read_text())
    assert values["tags"]["imagefactory:repo"] == NASTY
    assert values["tags"]["imagefactory:ref"] == NASTY


def parsed(features: Features) -> dict[str, dict]:
    """Each rendered file as HCL2 structure (blocks as lists of dicts, strings unquoted)."""
    return {name: hcl2.loads(text, serialization_options=HCL)
            for name, text in template_files(features, TEMPLATES).items()}


def image_source(hcl: dict[str, dict]) -> dict:
    (source,) = hcl["source.pkr.hcl"]["source"]
    return source["amazon-ebs"]["image"]


@pytest.mark.parametrize("target", ["aws", "sandbox"])
@pytest.mark.parametrize("provision", [False, True])
def test_the_packer_1_7_render_has_the_structure_packer_needs(tmp_path: Path, target: str, provision: bool) -> None:
    hcl = parsed(Features(Capabilities((1, 10, 0)), target, provision))
    assert sorted(hcl) == ["build.pkr.hcl", "source.pkr.hcl", "variables.pkr.hcl", "versions.pkr.hcl"]
    (packer,) = hcl["versions.pkr.hcl"]["packer"]
    (plugins,) = packer["required_plugins"]
    assert plugins == {"amazon": {"source": "github.com/hashicorp/amazon", "version": ">= 1.2.0"}}
    image = image_source(hcl)
    assert image["metadata_options"] == [{"http_endpoint": "enabled", "http_tokens": "required",
                                          "http_put_response_hop_limit": 1}]
    assert image["temporary_security_group_source_cidrs"] == "${var.ssh_source_cidrs}"
    assert image["communicator"] == ("ssh" if provision else "none")
    assert ("ssh_host" in image) == (target == "sandbox" and provision)
    (build,) = hcl["build.pkr.hcl"]["build"]
    assert build["sources"] == ["source.amazon-ebs.image"]
    steps = [(kind, body) for step in build.get("provisioner", []) for kind, body in step.items()]
    assert [kind for kind, _ in steps] == (["file", "shell", "file", "shell"] if provision else [])
    assert all(body["execute_command"] == "${var.execute_command}" for kind, body in steps if kind == "shell")
    assert [next(iter(p)) for p in build["post-processor"]] == ["manifest"]
    declared = {name for block in hcl["variables.pkr.hcl"]["variable"] for name in block}
    var_file = json.loads((render(tmp_path, target, provision, recipe(), (1, 10, 0)) / VAR_FILE).read_text())
    assert set(var_file) <= declared, "every value in the var file is a declared variable"
    assert set(re.findall(r"\bvar\.([a-z0-9_]+)", json.dumps(hcl))) <= declared


def test_packer_1_6_has_neither_plugins_nor_metadata_options_but_the_same_ssh_source() -> None:
    hcl = parsed(Features(Capabilities((1, 6, 6)), "aws", True))
    assert "versions.pkr.hcl" not in hcl
    image = image_source(hcl)
    assert "metadata_options" not in image
    assert image["temporary_security_group_source_cidrs"] == "${var.ssh_source_cidrs}"


def test_ssh_reaches_the_build_instance_from_one_address_only() -> None:
    values = packer_vars(recipe(), build_id="b1", target="aws", factory_version="0", endpoint=None,
                         ssh_sources=("203.0.113.7/32",))
    assert values["ssh_source_cidrs"] == ["203.0.113.7/32"]
    for wide in (("0.0.0.0/0",), ("203.0.113.0/24",), ("not-an-address",), ()):
        with pytest.raises(RenderError, match="ssh sources"):
            packer_vars(recipe(), build_id="b1", target="aws", factory_version="0", endpoint=None, ssh_sources=wide)


def test_the_provisioners_command_and_paths_come_from_the_contract(tmp_path: Path) -> None:
    values = json.loads((render(tmp_path, "aws", True, recipe()) / VAR_FILE).read_text())
    assert values["execute_command"] == EXECUTE_COMMAND
    assert (values["remote_dir"], values["manifest_path"]) == (REMOTE_DIR, MANIFEST_PATH)


def test_the_build_dir_is_the_owners_only(tmp_path: Path) -> None:
    build_dir = render(tmp_path, "aws", True, recipe())
    assert stat.S_IMODE(build_dir.stat().st_mode) == 0o700


@pytest.mark.parametrize("bad", ["{{ .SourceAMI }}", "a{{b", "line\nbreak", "tab\there", "nul\x00"])
def test_filter_refuses_go_templates_and_control_characters(bad: str) -> None:
    with pytest.raises(RenderError):
        packer_safe("ref", bad)


def test_go_template_in_a_ref_is_refused_before_packer_runs() -> None:
    with pytest.raises(RenderError, match="Go template"):
        packer_vars(recipe(ref="feature/{{.Env}}"), build_id="b1", target="aws", factory_version="0",
                    endpoint=None, ssh_sources=("203.0.113.7/32",))


@pytest.mark.parametrize("ok", ["quote'd", 'dq"', "${var.x}", "%{if}", "$(id)", "`id`", "a;b|c&d"])
def test_filter_passes_text_that_is_harmless_in_a_json_var_file(ok: str) -> None:
    assert packer_safe("ref", ok) == ok


CLASS_KEYS = {"us-west-2": "arn:aws:kms:us-west-2:123456789012:key/0f0e0d0c-1111-2222-3333-444455556666",
              "us-east-2": "alias/imagefactory-class"}


def keyed(kms_key: str | dict[str, str]) -> Recipe:
    base = recipe().with_regions(("us-west-2", "us-east-2"))
    return replace(base, image=replace(base.image, kms_key=kms_key))


@pytest.mark.parametrize("target", ["aws", "sandbox"])
@pytest.mark.parametrize("kms_key", ["alias/imagefactory-class", CLASS_KEYS])
def test_image_kms_key_reaches_packer_as_variables_and_validates(tmp_path: Path, target: str,
                                                                 kms_key: str | dict[str, str]) -> None:
    build_dir = render(tmp_path, target, False, keyed(kms_key))
    values = json.loads((build_dir / VAR_FILE).read_text())
    per_region = kms_key if isinstance(kms_key, dict) else dict.fromkeys(CLASS_KEYS, kms_key)
    assert values["kms_key_id"] == per_region["us-west-2"]
    assert values["region_kms_key_ids"] == {"us-east-2": per_region["us-east-2"]}
    assert "imagefactory-class" not in "".join(p.read_text() for p in build_dir.glob("*.pkr.hcl"))
    validate = subprocess.run([find_packer().path, "validate", f"-var-file={VAR_FILE}", "."], cwd=build_dir,
                              capture_output=True, text=True)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    image = image_source(parsed(Features(Capabilities((1, 10, 0)), target, True)))
    assert image["kms_key_id"] == "${var.kms_key_id}"
    assert image["region_kms_key_ids"] == "${var.region_kms_key_ids}"
    assert image["encrypt_boot"] == "${var.encrypt_boot}"


def test_without_image_kms_key_packer_gets_the_default_key() -> None:
    values = packer_vars(recipe(), build_id="b1", target="aws", factory_version="0.1.0", endpoint=None,
                         ssh_sources=("127.0.0.1/32",))
    assert (values["kms_key_id"], values["region_kms_key_ids"]) == ("", {})


@pytest.mark.parametrize(("kms_key", "expected"), [
    ({"us-west-2": CLASS_KEYS["us-west-2"]}, "image.kms_key names no key for us-east-2"),
    ("alias/aws/ebs", "image.kms_key is alias/aws/ebs, the AWS-managed key"),
])
def test_an_image_kms_key_that_cannot_serve_every_region_or_student_is_refused(kms_key: str | dict[str, str],
                                                                                expected: str) -> None:
    with pytest.raises(RenderError) as err:
        packer_vars(keyed(kms_key), build_id="b1", target="aws", factory_version="0.1.0", endpoint=None,
                    ssh_sources=("127.0.0.1/32",))
    assert str(err.value).startswith(expected)


def test_a_recipe_states_kms_key_per_region_or_once_and_refuses_a_bare_key_id() -> None:
    doc = {"name": "demo", "source": {"repo": "https://example.org/r.git", "commit": "0123456789abcdef"},
           "image": {"kms_key": CLASS_KEYS}}
    assert Recipe.from_dict(doc).image.key_for("us-east-2") == "alias/imagefactory-class"
    assert Recipe.from_dict({**doc, "image": {"kms_key": "alias/k"}}).image.key_for("eu-west-1") == "alias/k"
    assert "kms_key" not in json.dumps(recipe().to_dict()), "a recipe without a key keeps its digest"
    with pytest.raises(RecipeError) as err:
        Recipe.from_dict({**doc, "image": {"kms_key": "0f0e0d0c-1111-2222-3333-444455556666"}})
    assert "kms_key" in str(err.value)


def test_deprecate_at_is_rendered_only_where_packer_has_it_and_comes_from_the_lifecycle() -> None:
    from datetime import UTC, datetime

    from imagefactory.recipe.model import Lifecycle
    from imagefactory.render import deprecation_time

    assert "deprecate_at" not in image_source(parsed(Features(Capabilities((1, 6, 6)), "aws", True)))
    newer = image_source(parsed(Features(Capabilities((1, 10, 0)), "aws", True)))
    assert newer["deprecate_at"] == "${var.deprecate_at}"
    started = datetime(2026, 12, 1, 10, 30, 5, tzinfo=UTC)
    assert deprecation_time(recipe(), started) == "2027-01-30T10:30:05Z"
    assert deprecation_time(replace(recipe(), lifecycle=Lifecycle(deprecate_after_days=7)), started) == \
        "2026-12-08T10:30:05Z"
    values = packer_vars(recipe(), build_id="b1", target="aws", factory_version="0", endpoint=None,
                         ssh_sources=("127.0.0.1/32",), deprecate_at="2027-01-30T10:30:05Z")
    assert values["deprecate_at"] == "2027-01-30T10:30:05Z"

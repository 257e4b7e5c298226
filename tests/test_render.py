"""Rendering: every combination passes the real `packer validate` and `packer fmt -check`; values
never reach template text; Packer-version gating; the one filter refuses Go templates."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from imagefactory.errors import RenderError
from imagefactory.home import SOURCE_ROOT
from imagefactory.packer import Capabilities, find_packer
from imagefactory.provision import Provisioners
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


def test_version_gating() -> None:
    old = template_files(Features(Capabilities((1, 6, 6)), "aws", True), TEMPLATES)
    new = template_files(Features(Capabilities((1, 10, 0)), "aws", True), TEMPLATES)
    assert "versions.pkr.hcl" not in old
    assert "required_plugins" in new["versions.pkr.hcl"]
    assert "metadata_options" not in old["source.pkr.hcl"]
    assert 'http_tokens                 = "required"' in new["source.pkr.hcl"]


def test_sandbox_and_aws_differ_only_in_gated_parts() -> None:
    aws = template_files(Features(Capabilities((1, 6, 6)), "aws", True), TEMPLATES)["source.pkr.hcl"]
    sandbox = template_files(Features(Capabilities((1, 6, 6)), "sandbox", True), TEMPLATES)["source.pkr.hcl"]
    assert "ssh_host" in sandbox and "ssh_host" not in aws
    assert 'communicator = "ssh"' in aws


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

"""provision.py: the config is pure and injection-proof; the staged folder holds what the scripts need;
lib.sh hands config values to the scripts as data; pre-flight names what the sandbox lacks."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from imagefactory import preflight, provision
from imagefactory.errors import RenderError
from imagefactory.recipe.model import Environment, Jupyter, PostBuild, PythonSpec, Recipe, Source

NASTY = "x'y\"z $(touch {marker}) `touch {marker}` ;touch {marker}\nsecond line"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}


def recipe(repo: str = "https://github.com/o/r", commit: str = "a" * 40, python: str = "3.11",
           extensions: tuple[str, ...] = (), pip: tuple[str, ...] = ("requirements.txt",),
           conda: tuple[str, ...] = ()) -> Recipe:
    env = Environment(python=PythonSpec(python, "stated", "runtime.txt"), pip=pip, conda=conda,
                      post_build=(PostBuild("postBuild", run=True), PostBuild("other.sh", run=False)))
    return Recipe(name="demo", source=Source(repo, "main", commit), environment=env,
                  jupyter=Jupyter(port=8890, extensions=extensions))


def config(rec: Recipe, target: str = "sandbox", **kw: object) -> dict:
    args: dict = {"build_id": "20250101-abc", "packer_version": "1.6.6", "factory_version": "0.1.0",
                  "target": target, "autostop_minutes": 30, "kernel_name": "demo",
                  "smoke": {"required": ["six"], "if_installed": []}}
    args.update(kw)
    return provision.provision_config(rec, **args)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout.strip()


def make_repo(path: Path, commits: int = 2) -> str:
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for i in range(commits):
        (path / "requirements.txt").write_text(f"six  # {i}\n")
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"c{i}")
    return git(path, "rev-parse", "HEAD")


# ------------------------------------------------------------------------------------- the config

def test_config_is_pure_and_json_able() -> None:
    rec = recipe()
    first, second = config(rec), config(rec)
    assert first == second
    assert json.loads(json.dumps(first)) == first
    assert first["config_version"] == 1
    assert set(first) == {"config_version", "build_id", "target", "recipe", "source", "login_user", "python",
                          "apt", "conda", "pip", "pipfile", "install_repo", "post_build", "kernel", "jupyter",
                          "autostop_minutes", "smoke", "prefix", "versions", "packages", "data", "build",
                          "environment_inputs"}
    assert first["recipe"] == {"name": "demo", "digest": rec.digest()}
    assert first["post_build"] == ["postBuild"], "only scripts with run: true"
    assert first["jupyter"] == {"port": 8890, "extensions": [], "token_file": provision.TOKEN_FILE}
    assert first["source"]["archive"] == "git" and first["source"]["dirname"] == "demo"


def test_python_downloads_depend_on_target() -> None:
    assert config(recipe())["python"] == {"version": "3.11", "downloads": "never"}
    assert config(recipe(), target="aws")["python"] == {"version": "3.11", "downloads": "automatic"}


def test_plain_directory_ships_files() -> None:
    assert config(recipe(commit="dir-sha256:" + "0" * 64))["source"]["archive"] == "files"


@pytest.mark.parametrize("kw", [{"target": "gcp"}, {"kernel_name": "bad name"}, {"kernel_name": "-x"},
                                {"autostop_minutes": 0}, {"build_id": " "}])
def test_bad_inputs_are_refused(kw: dict) -> None:
    with pytest.raises(RenderError):
        config(recipe(), **kw)


def test_hostile_values_reach_config_verbatim_and_are_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    nasty = NASTY.format(marker=marker)
    rec = recipe(repo=nasty, extensions=(nasty, "jupyterlab-git"), pip=(nasty,))
    checkout = tmp_path / "src"
    rec = rec.with_source(Source(nasty, "main", make_repo(checkout)))
    cfg = config(rec)
    staged = provision.stage_provision_dir(tmp_path / "build", rec, cfg, checkout, None)
    on_disk = json.loads((staged / "config.json").read_text())
    assert on_disk["source"]["repo"] == nasty and on_disk["pip"] == [nasty]
    assert on_disk["jupyter"]["extensions"] == [nasty, "jupyterlab-git"]
    got = lib_sh(staged, 'if_get source.repo; printf "|"; if_list jupyter.extensions')
    assert got == f"{nasty}|{nasty}\0jupyterlab-git\0"
    assert not marker.exists()


def lib_sh(staged: Path, body: str) -> str:
    """Run body in bash after sourcing lib.sh, as a stage does; return stdout."""
    script = f'set -euo pipefail; source "$IF_DIR/scripts/lib.sh"; {body}'
    env = {"PATH": os.environ["PATH"], "IF_DIR": str(staged), "IF_CONFIG": str(staged / "config.json")}
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True).stdout


# ------------------------------------------------------------------------------ the staged folder

def test_stage_dir_holds_scripts_files_config_repo_and_ca(tmp_path: Path) -> None:
    checkout = tmp_path / "src"
    rec = recipe(commit=make_repo(checkout))
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")
    staged = provision.stage_provision_dir(tmp_path / "build", rec, config(rec), checkout, ca)
    assert staged == tmp_path / "build" / "provision"
    names = sorted(p.name for p in staged.iterdir())
    assert names == ["config.json", "extra-ca.pem", "files", "repo.tar", "scripts"]
    assert (staged / "scripts/lib.sh").is_file() and (staged / "files/if_config.py").is_file()
    with tarfile.open(staged / "repo.tar") as tar:
        members = tar.getmembers()
    assert all(m.name.startswith("repo.git") and m.uid == 0 for m in members)
    out = tmp_path / "clone"
    lib_sh(staged, f'if_checkout "{out}"')
    assert git(out, "rev-parse", "HEAD") == rec.source.commit
    assert (out / "requirements.txt").read_text() == "six  # 1\n"


def test_shallow_checkout_is_shipped_as_a_shallow_bare_clone(tmp_path: Path) -> None:
    full = tmp_path / "full"
    make_repo(full, commits=3)
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{full}", str(shallow)], check=True)
    rec = recipe(commit=git(shallow, "rev-parse", "HEAD"))
    staged = provision.stage_provision_dir(tmp_path / "build", rec, config(rec), shallow, None)
    out = tmp_path / "clone"
    lib_sh(staged, f'if_checkout "{out}"')
    assert git(out, "rev-parse", "HEAD") == rec.source.commit
    assert git(out, "rev-list", "--count", "HEAD") == "1"


def test_detached_commit_on_no_branch_is_included(tmp_path: Path) -> None:
    checkout = tmp_path / "src"
    make_repo(checkout)
    git(checkout, "checkout", "-q", "--detach")
    (checkout / "extra.txt").write_text("x\n")
    git(checkout, "add", "-A")
    git(checkout, "commit", "-q", "-m", "detached")
    rec = recipe(commit=git(checkout, "rev-parse", "HEAD"))
    staged = provision.stage_provision_dir(tmp_path / "build", rec, config(rec), checkout, None)
    out = tmp_path / "clone"
    lib_sh(staged, f'if_checkout "{out}"')
    assert (out / "extra.txt").is_file()


def test_plain_directory_is_shipped_as_files(tmp_path: Path) -> None:
    src = tmp_path / "plain"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg/mod.py").write_text("X = 1\n")
    (src / "requirements.txt").write_text("six\n")
    rec = recipe(commit="dir-sha256:" + "1" * 64)
    staged = provision.stage_provision_dir(tmp_path / "build", rec, config(rec), src, None)
    out = tmp_path / "copy"
    lib_sh(staged, f'if_checkout "{out}"')
    assert (out / "pkg/mod.py").read_text() == "X = 1\n" and not (out / ".git").exists()


def test_mismatched_config_is_refused(tmp_path: Path) -> None:
    checkout = tmp_path / "src"
    rec = recipe(commit=make_repo(checkout))
    with pytest.raises(RenderError):
        provision.stage_provision_dir(tmp_path / "b", rec, config(recipe(commit="b" * 40)), checkout, None)


def test_stage_scripts_split_at_the_manifest_download() -> None:
    before, after = provision.stage_scripts()
    assert [p.name for p in before] == ["05-prepare.sh", "10-base.sh", "20-python.sh", "30-server-env.sh",
                                        "40-kernel-env.sh", "50-repo.sh", "55-data.sh", "60-post-build.sh",
                                        "70-jupyter.sh", "80-smoke.sh", "85-manifest.sh"]
    assert [p.name for p in after] == ["90-cleanup.sh", "95-secret-scan.sh"]


def test_execute_command_runs_a_stage_as_packer_does(tmp_path: Path) -> None:
    """Packer replaces {{ .Path }} with the uploaded script; the command must hand it IF_CONFIG and IF_DIR
    (pointing at REMOTE_DIR) and run it with bash. `sudo -E` (the build instance's) is a pass-through here."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/sudo").write_text('#!/bin/sh\n[ "$1" = -E ] && shift\nexec "$@"\n')
    (tmp_path / "bin/sudo").chmod(0o755)
    script = tmp_path / "my stage.sh"
    script.write_text('printf "%s|%s|%s" "$IF_CONFIG" "$IF_DIR" "$BASH_VERSION"\n')
    command = provision.EXECUTE_COMMAND.replace("{{ .Path }}", str(script))
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True, env=env)
    config, remote, bash = done.stdout.split("|")
    assert (config, remote) == (f"{provision.REMOTE_DIR}/config.json", provision.REMOTE_DIR) and bash


def test_the_repo_copy_is_the_owners_only_and_dropped_when_the_build_ends(tmp_path: Path) -> None:
    checkout = tmp_path / "src"
    rec = recipe(commit=make_repo(checkout))
    staged = provision.stage_provision_dir(tmp_path / "build", rec, config(rec), checkout, None)
    assert stat.S_IMODE((staged / "repo.tar").stat().st_mode) == 0o600
    provision.drop_repo_copy(tmp_path / "build")
    assert not (staged / "repo.tar").exists() and (staged / "config.json").is_file()
    provision.drop_repo_copy(tmp_path / "build")  # again: nothing to drop is fine


def test_provisioners_name_the_staged_scripts_and_the_contract() -> None:
    steps = provision.provisioners()
    values = steps.values()
    assert values["provision_scripts"][:2] == ["provision/scripts/05-prepare.sh", "provision/scripts/10-base.sh"]
    assert values["cleanup_scripts"] == ["provision/scripts/90-cleanup.sh", "provision/scripts/95-secret-scan.sh"]
    assert values["provision_dir"] == "provision" and values["execute_command"] == provision.EXECUTE_COMMAND


# ------------------------------------------------------------------------------------- pre-flight

def test_preflight_names_the_python_the_sandbox_lacks_and_whether_a_rehearsal_works() -> None:
    wants = "the recipe wants Python 3.8 (stated: runtime.txt) but the sandbox rootfs has only 3.11; "
    asked: list[str] = []
    problems = preflight.preflight(recipe(python="3.8"), target="sandbox", probe=lambda url: True,
                                   rehearse=lambda minor: asked.append(minor))
    assert problems == [wants + "its pins resolve at 3.11 too: rehearse with --python 3.11"] and asked == ["3.11"]
    problems = preflight.preflight(recipe(python="3.8"), target="sandbox", probe=lambda url: True,
                                   rehearse=lambda minor: "Because numpy==1.18.1 has no wheels")
    assert problems == [wants + "its pins do not resolve at 3.11 (Because numpy==1.18.1 has no wheels): "
                                "rehearse with --api-only, build on AWS"]
    problems = preflight.preflight(recipe(python="3.8"), target="sandbox", probe=lambda url: True)
    assert problems == [wants + "rehearse with --python 3.11 if the pins allow it, or with --api-only"]


def test_preflight_names_unreachable_conda_channels() -> None:
    reachable = {preflight.PYPI_URL}
    problems = preflight.preflight(recipe(conda=("environment.yml",)), target="sandbox",
                                   probe=lambda url: url in reachable)
    assert len(problems) == 2
    assert "environment.yml" in problems[0] and "conda.anaconda.org" in problems[0]
    assert "micro.mamba.pm" in problems[1]


def test_preflight_is_quiet_for_a_good_sandbox_recipe_and_for_aws() -> None:
    assert preflight.preflight(recipe(), target="sandbox", probe=lambda url: True) == []
    assert preflight.preflight(recipe(python="3.8", conda=("e.yml",)), target="aws",
                               probe=lambda url: False) == []

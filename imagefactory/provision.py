"""The provisioning contract: the config the image's scripts read, and the folder Packer uploads.

Packer (amazon-ebs on AWS or against the sandbox emulator) connects over SSH as the recipe's login user,
then, in this order:

1. `file` provisioner: `source = "${path.root}/provision"` (NO trailing slash), `destination =
   "/tmp/imagefactory"` (`REMOTE_DIR`): scp then creates the folder from `provision/` (made by
   `stage_provision_dir`). With a trailing slash Packer 1.6.6 fails ("scp: /tmp/imagefactory: Is a
   directory") because the destination does not exist yet. The folder holds `config.json`, `repo.tar`,
   `scripts/`, `files/` and, optionally, `extra-ca.pem`.
2. `shell` provisioner: runs `packer/scripts/05-prepare.sh` … `85-manifest.sh` (`stage_scripts()[0]`) with
   `execute_command = EXECUTE_COMMAND`, i.e. as root with IF_CONFIG and IF_DIR set. An incremental build
   (from a parent build's image, which holds the environment already) runs the same list without the
   environment install, stages 10 … 49 (`ENVIRONMENT_STAGES`: 10-base, 20-python, 30-server-env,
   40-kernel-env); the scripts themselves do not know the difference.
3. `file` provisioner, `direction = "download"`: `/etc/imagefactory/manifest.json` into the build dir.
4. `shell` provisioner: `90-cleanup.sh`, `95-secret-scan.sh` (`stage_scripts()[1]`), same command.

The template holds none of these values: `Provisioners.values()` hands the scripts, EXECUTE_COMMAND,
REMOTE_DIR and MANIFEST_PATH to Packer as variables. `repo.tar` (mode 0600) is removed when the build
ends, on every path (`drop_repo_copy`): it is a copy of the repository, with whatever it holds.

`repo.tar` holds the checkout at the recorded commit. For a git checkout (any commit that is not a
`dir-sha256:` digest) it is a bare clone `repo.git/` of the checkout (shallow if the checkout is;
`git bundle` cannot carry a shallow history); `source.archive` is `"git"`. For a plain directory it holds
the directory's files (without `.git`); `source.archive` is `"files"`.

config.json (config_version 1); every value reaches the scripts verbatim, as data:

    config_version  1
    build_id        str                      the bake's build id
    target          "aws" | "sandbox"
    recipe          {name: str, digest: "sha256:…"}
    source          {repo: str (URL or path, becomes `origin`), ref: str | null, commit: str,
                     archive: "git" | "files", dirname: str (the recipe name; the repo lands in
                     ~login_user/<dirname>)}
    login_user      str
    python          {version: "3.X", downloads: "never" (sandbox) | "automatic" (aws)}
    apt             [str]                    Debian/Ubuntu package names
    conda           [str]                    repo-relative conda environment files (micromamba)
    pip             [str]                    repo-relative pip requirement files (uv, pip fallback)
    pipfile         str | null               repo-relative Pipfile (Pipfile.lock beside it wins)
    install_repo    bool                     install the repo itself (editable) into the kernel env
    post_build      [str]                    repo-relative scripts to run (only those with run: true)
    kernel          {name: str, display_name: str}
    jupyter         {port: int, extensions: [str], token_file: ".jupyter/imagefactory-token"
                     (relative to the login user's home)}
    autostop_minutes int | null              the image's default idle minutes before it stops itself (null:
                                             never); /etc/imagefactory/autostop-minutes, written by `launch`
                                             through user data, wins at run time (0: off). Every image has
                                             the idle timer.
    smoke           {required: [str], if_installed: [str]}   distributions the smoke test imports (the
                                             recipe's files, parsed by the factory); if_installed ones (conda
                                             packages) only when they installed a Python distribution; and
                                             (imagefactory.smoke.smoke_config) modules [{module, kind, fail}]
                                             (the code's imports), fail_on_import, programs [str],
                                             libraries [str] (system packages), notebooks [{path, timeout}]
                                             (run: true ones)
    packages        [str]                    pip requirements beyond the files (environment.packages)
    data            [{url, sha256, dest, unpack} | {git, commit, dest}]   the recipe's data (55-data)
    prefix          "/opt/imagefactory"      server/, kernel/, tools/, bin/ live under it
    versions        {packer: str, factory: str}
    build           {mode: "full" | "incremental", parent: str | null}   recorded in the manifest
    environment_inputs {stages: "sha256:…", files: {repo-relative path: "sha256:…" | "absent"}} | null
                                             what the environment install read (`incremental`), recorded
                                             in the manifest so a later build can tell it is unchanged

Only `stage_provision_dir` writes to the disk; apart from reading the contract's scripts, the rest is pure.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagefactory import proc
from imagefactory.contract import shipped
from imagefactory.errors import RenderError, RepoError
from imagefactory.recipe.model import APT_RE, NAME_RE, Recipe

CONFIG_VERSION = 1
TARGETS = ("aws", "sandbox")
PREFIX = "/opt/imagefactory"
REMOTE_DIR = "/tmp/imagefactory"
MANIFEST_PATH = "/etc/imagefactory/manifest.json"
TOKEN_FILE = ".jupyter/imagefactory-token"
EXECUTE_COMMAND = (f"sudo -E env IF_CONFIG={REMOTE_DIR}/config.json IF_DIR={REMOTE_DIR} "
                   "bash '{{ .Path }}'")
PACKER_DIR = shipped()
PROVISION_DIR = "provision"  # in the build dir: what the file provisioner uploads to REMOTE_DIR
REPO_TAR = "repo.tar"
DIR_COMMIT_PREFIX = "dir-sha256:"
KERNEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
STAGE_RE = re.compile(r"(\d\d)-[a-z0-9-]+\.sh")
LAST_STAGE_BEFORE_DOWNLOAD = 85
ENVIRONMENT_STAGES = range(10, 50)  # what an incremental build skips: its parent's image holds their work
FILE_USE_RE = re.compile(r"\$(?:files|IF_DIR/files)/([\w.-]+)")



def provision_config(recipe: Recipe, *, build_id: str, packer_version: str, factory_version: str,
                     target: str, autostop_minutes: int | None, kernel_name: str,
                     smoke: dict[str, list[str]], parent_build: str | None = None,
                     environment_inputs: dict[str, Any] | None = None) -> dict:
    """The JSON-able config.json for one build (schema in the module docstring); `smoke` is what
    `imagefactory.smoke.smoke_packages` found: the names the image's smoke test imports. Pure."""
    _check_inputs(recipe, build_id=build_id, target=target, autostop_minutes=autostop_minutes,
                  kernel_name=kernel_name)
    env = recipe.environment
    return {
        "config_version": CONFIG_VERSION,
        "build_id": build_id,
        "target": target,
        "recipe": {"name": recipe.name, "digest": recipe.digest()},
        "source": {
            "repo": recipe.source.repo,
            "ref": recipe.source.ref,
            "commit": recipe.source.commit,
            "archive": archive_kind(recipe.source.commit),
            "dirname": recipe.name,
        },
        "login_user": recipe.image.login_user,
        "python": {"version": env.python.version,
                   "downloads": "never" if target == "sandbox" else "automatic"},
        "apt": list(env.apt),
        "conda": list(env.conda),
        "pip": list(env.pip),
        "pipfile": env.pipfile,
        "install_repo": env.install_repo,
        "post_build": [p.path for p in env.post_build if p.run],
        "kernel": {"name": kernel_name,
                   "display_name": f"Python {env.python.version} ({recipe.name})"},
        "jupyter": {"port": recipe.jupyter.port, "extensions": list(recipe.jupyter.extensions),
                    "token_file": TOKEN_FILE},
        "autostop_minutes": autostop_minutes,
        "smoke": {**smoke, "required": list(smoke["required"]), "if_installed": list(smoke["if_installed"])},
        "packages": list(env.packages),
        "data": [d.to_dict() for d in recipe.data],
        "prefix": PREFIX,
        "versions": {"packer": packer_version, "factory": factory_version},
        "build": {"mode": "incremental" if parent_build else "full", "parent": parent_build},
        "environment_inputs": environment_inputs,
    }


def _check_inputs(recipe: Recipe, *, build_id: str, target: str, autostop_minutes: int | None,
                  kernel_name: str) -> None:
    if target not in TARGETS:
        raise RenderError(f"unknown provisioning target {target!r}", f"use one of {', '.join(TARGETS)}")
    if not KERNEL_NAME_RE.fullmatch(kernel_name):
        raise RenderError(f"kernel name {kernel_name!r} is not usable",
                          "use letters, digits, '.', '_' and '-' (at most 64), starting alphanumeric")
    if not build_id.strip():
        raise RenderError("the build id is empty", "pass the bake's build id")
    if autostop_minutes is not None and not 1 <= autostop_minutes <= 7 * 24 * 60:
        raise RenderError(f"autostop of {autostop_minutes} minutes is out of range",
                          "give 1 to 10080 minutes, or none to never stop")
    if not NAME_RE.fullmatch(recipe.name):
        raise RenderError(f"recipe name {recipe.name!r} cannot name a folder", "fix the recipe's name")
    bad = [name for name in recipe.environment.apt if not APT_RE.fullmatch(name)]
    if bad:
        raise RenderError(f"apt package names {bad!r} are not valid", "use Debian package names")


def archive_kind(commit: str) -> str:
    """"files" for a plain directory (its commit is a content digest), else "git"."""
    return "files" if commit.startswith(DIR_COMMIT_PREFIX) else "git"


def stage_scripts(packer_dir: Path = PACKER_DIR) -> tuple[list[Path], list[Path]]:
    """The NN-stage.sh scripts in run order: (up to 85-manifest, after the manifest download)."""
    names = sorted(p for p in (packer_dir / "scripts").iterdir() if STAGE_RE.fullmatch(p.name))
    before = [p for p in names if int(p.name[:2]) <= LAST_STAGE_BEFORE_DOWNLOAD]
    return before, [p for p in names if p not in before]


@dataclass(frozen=True)
class Provisioners:
    """What the template's provisioners run, as Packer variables: the stage scripts (relative to the build
    dir) before and after the manifest download, and the contract's command and paths."""

    scripts: tuple[str, ...] = ()
    cleanup: tuple[str, ...] = ()

    def values(self) -> dict[str, Any]:
        return {"provision_dir": PROVISION_DIR, "provision_scripts": list(self.scripts),
                "cleanup_scripts": list(self.cleanup), "execute_command": EXECUTE_COMMAND,
                "remote_dir": REMOTE_DIR, "manifest_path": MANIFEST_PATH}


def provisioners(packer_dir: Path = PACKER_DIR, *, incremental: bool = False) -> Provisioners:
    """The stages of `packer_dir/scripts`, as the staged folder holds them; an incremental build's skip
    the environment install (`ENVIRONMENT_STAGES`)."""
    before, after = stage_scripts(packer_dir)
    if incremental:
        before = [p for p in before if int(p.name[:2]) not in ENVIRONMENT_STAGES]
    return Provisioners(tuple(f"{PROVISION_DIR}/scripts/{p.name}" for p in before),
                        tuple(f"{PROVISION_DIR}/scripts/{p.name}" for p in after))


def environment_stages_digest(packer_dir: Path = PACKER_DIR) -> str:
    """sha256 over what an incremental build skips: the environment stages, lib.sh and the files they use."""
    scripts = [p for p in stage_scripts(packer_dir)[0] if int(p.name[:2]) in ENVIRONMENT_STAGES]
    used = sorted({name for p in scripts for name in FILE_USE_RE.findall(p.read_text())})
    parts = [*scripts, packer_dir / "scripts" / "lib.sh", *(packer_dir / "files" / name for name in used)]
    digest = hashlib.sha256()
    for part in parts:
        data = part.read_bytes() if part.is_file() else b""
        digest.update(f"{part.parent.name}/{part.name}\0{len(data)}\0".encode() + data)
    return "sha256:" + digest.hexdigest()


def drop_repo_copy(build_dir: Path) -> None:
    """Remove the uploaded copy of the repository from the build dir (when the build ends, on every path)."""
    (build_dir / PROVISION_DIR / REPO_TAR).unlink(missing_ok=True)


def stage_provision_dir(build_dir: Path, recipe: Recipe, config: dict, checkout: Path,
                        extra_ca: Path | None, *, packer_dir: Path = PACKER_DIR) -> Path:
    """Make `build_dir/provision/` (replacing any old one) for Packer to upload; return its path."""
    if config["source"]["commit"] != recipe.source.commit:
        raise RenderError("config.json and the recipe name different commits", "render the config again")
    out = build_dir / PROVISION_DIR
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(packer_dir / "scripts", out / "scripts", ignore=ignore)
    shutil.copytree(packer_dir / "files", out / "files", ignore=ignore)
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    repo_tar = out / REPO_TAR
    repo_tar.touch(mode=0o600)
    if config["source"]["archive"] == "git":
        _tar_git(checkout, recipe.source.commit, repo_tar)
    else:
        _tar_files(checkout, repo_tar)
    if extra_ca is not None:
        shutil.copyfile(extra_ca, out / "extra-ca.pem")
    return out


def _git(*args: str) -> str:
    try:
        return proc.run(["git", *args]).stdout.strip()
    except proc.CommandError as err:
        raise RepoError(f"packing the repo for the image failed: {err.message}", err.hint) from None


def _tar_git(checkout: Path, commit: str, dest: Path) -> None:
    """repo.tar holding `repo.git/`, a bare clone of `checkout` that contains `commit`."""
    with tempfile.TemporaryDirectory(prefix="if-repo-") as tmp:
        bare = Path(tmp) / "repo.git"
        _git("clone", "--quiet", "--bare", "--no-local", "--", str(checkout), str(bare))
        if not _has_commit(bare, commit):
            if _git("-C", str(checkout), "rev-parse", "HEAD") != commit:
                raise RepoError(f"commit {commit} is on no branch of {checkout} and is not its HEAD",
                                "check out the recorded commit before baking")
            _git("-C", str(bare), "fetch", "--quiet", "--no-tags", "--", str(checkout),
                 "+HEAD:refs/imagefactory/build")
        with tarfile.open(dest, "w") as tar:
            tar.add(bare, arcname="repo.git", filter=_root_owned)


def _has_commit(repo: Path, commit: str) -> bool:
    probe = ["git", "-C", str(repo), "cat-file", "-e", f"{commit}^{{commit}}"]
    return proc.run(probe, check=False).returncode == 0


def _tar_files(checkout: Path, dest: Path) -> None:
    with tarfile.open(dest, "w") as tar:
        for child in sorted(checkout.iterdir()):
            if child.name != ".git":
                tar.add(child, arcname=child.name, filter=_root_owned)


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info

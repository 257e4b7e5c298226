"""Shared fixtures: real git repos in temp dirs, factory homes, the real CLI as a subprocess.

Nothing here mocks boto3 or Packer: sandbox tests run the real Packer against the real emulator.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from imagefactory.home import Home, user_cache_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
SIMPLE_API = Path(__file__).parent / "data" / "simple_api"
# ChristinaB/dhsvm-opt's environment/requirements.txt: exact pins with wheels only up to Python 3.8
DHSVM_PINS = ("matplotlib==3.1.3\nnumpy==1.18.1\ngraphviz==0.13.2\nscikit-learn==0.22.1\npydotplus==2.0.2\n"
              "SQLAlchemy==1.3.13\nipython==7.12.0\npandas==1.0.1\n")


def load_module(name: str, path: Path) -> ModuleType:
    """The Python file at `path` (not on sys.path: packer/files' helpers, the test index server) as a module."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# tests/data/simple_api/server.py: a local index replaying recorded PEP 691 answers
simple_api_server = load_module("simple_api_server", SIMPLE_API / "server.py")
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, text=True,
                         capture_output=True, check=True)
    return out.stdout.strip()


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def commit_repo(root: Path, files: dict[str, str], branch: str = "main") -> Path:
    """A new git repo at `root` holding `files` in one commit (what `make_repo` makes; usable in
    module-scoped fixtures)."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", branch)
    write_files(root, files)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


MakeRepo = Callable[..., Path]


@pytest.fixture
def make_repo(tmp_path: Path) -> MakeRepo:
    """make_repo(files, name="demo", branch="main") -> path of a new git repo with one commit."""

    def make(files: dict[str, str], name: str = "demo", branch: str = "main") -> Path:
        return commit_repo(tmp_path / "repos" / name, files, branch)

    return make


def new_home(root: Path) -> Home:
    root.mkdir(parents=True, exist_ok=True)
    (root / "catalog.yaml").write_text("catalog_version: 1\nimages: {}\n")
    return Home(root)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    """A fresh factory home; its sandbox emulator (if a test starts one) is stopped afterwards."""
    h = new_home(tmp_path / "home")
    yield h
    stop_emulator(h)


@pytest.fixture(scope="session")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    """One home (and one emulator) shared by the bake tests that need no isolation."""
    h = new_home(tmp_path_factory.mktemp("shared") / "home")
    yield h
    stop_emulator(h)


@pytest.fixture(scope="session")
def example_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    """The home where the bundled example is baked with real provisioning (once), then launched."""
    h = new_home(tmp_path_factory.mktemp("example") / "home")
    yield h
    stop_emulator(h)


EXAMPLE = REPO_ROOT / "examples" / "hello-binder"


def packed_build(h: Home) -> str:
    """The id of an available sandbox build of the bundled example with a packed rootfs in `h` (the
    session's `example_home`: whichever test needs one first bakes it, with real provisioning)."""
    import json

    from imagefactory import catalog
    from imagefactory.sandbox.archive import image_path

    entry = catalog.load(h.catalog_path("sandbox")).images.get("hello-binder")
    for build in sorted(entry.builds if entry else (), key=lambda b: b.created, reverse=True):
        if build.status == "available" and image_path(h, build.id).is_file():
            return build.id
    build_id = json.loads(run_cli(h, "bake", "--repo", str(EXAMPLE), "--sandbox", "--json", check=True,
                                  timeout=1800).stdout)["build_id"]
    assert image_path(h, build_id).is_file(), "a provisioned sandbox bake packs its root filesystem"
    return build_id


def stop_emulator(h: Home) -> None:
    from imagefactory.sandbox.emulator import down

    if h.emulator_dir.exists():
        down(h.emulator_dir)


def cli_env(h: Home, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # HOME is the test's home (no real ~/.aws, ~/.ssh); the machine-wide rootfs cache is shared
    env.update({"IMAGEFACTORY_HOME": str(h.root), "HOME": str(h.root), "IMAGEFACTORY_CACHE": str(user_cache_dir()),
                **GIT_ENV, **extra})
    return env


def interrupt_at(argv: list[str], cwd: Path, env: dict[str, str], marker: str, signum: int = signal.SIGINT,
                 timeout: float = 180) -> tuple[int, str]:
    """Run a CLI, send it `signum` once its progress (stderr) shows `marker`; its exit code and all its stderr."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            proc.send_signal(signum)
            break
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, "".join(seen) + err


def sandbox_client(endpoint: str, service: str = "ec2", region: str = "us-west-2",
                   creds: dict[str, str] | None = None) -> Any:
    """A real boto3 client against the emulator at `endpoint`: the owner account's (the sandbox credentials), or
    with `creds` (AWS_* variables, e.g. a student's assumed role) someone else's."""
    import boto3

    from imagefactory.sandbox.emulator import sandbox_credentials

    creds = creds or sandbox_credentials()
    return boto3.client(service, region_name=region, endpoint_url=endpoint,
                        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
                        aws_session_token=creds.get("AWS_SESSION_TOKEN"))


def build_amis(home: Home, build_id: str, regions: tuple[str, ...] = ("us-west-2", "us-east-2")) -> list[Any]:
    """The home's emulator's AMIs (the owner's) tagged with `build_id`, in every region given."""
    from imagefactory.sandbox.emulator import status
    from imagefactory.tags import BUILD_ID_TAG

    info = status(home.emulator_dir)
    assert info is not None, "the emulator is up"
    found: list[Any] = []
    for region in regions:
        found += sandbox_client(info.endpoint, region=region).describe_images(Owners=["self"], Filters=[
            {"Name": f"tag:{BUILD_ID_TAG}", "Values": [build_id]}])["Images"]
    return found


def home_processes(home: Home, naming: str | None = None) -> list[str]:
    """Live processes working inside the home, or whose command line names `naming` (default: the home's
    path); the emulator's own excepted."""
    from imagefactory.sandbox.emulator import status

    emulator = status(home.emulator_dir)
    needle = naming or str(home.root)
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or (emulator and int(entry.name) == emulator.pid):
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z" and (needle in cmdline or cwd.startswith(str(home.root))):
            left.append(f"{entry.name}: {cmdline.strip()} (in {cwd})")
    return left


def kill_bake_mid_provisioning(home: Home, repo: Path) -> Path:
    """Start a provisioned sandbox bake of `repo` and SIGKILL the orchestrator only (no clean-up runs; Packer and
    the build root are orphaned, as a crash leaves them) once Packer provisions over ssh; the build's directory."""
    argv = [sys.executable, "-c", "from imagefactory.main import program; program.run()",
            "bake", "--repo", repo.as_uri(), "--no-resolve", "--sandbox"]
    bake = subprocess.Popen(argv, cwd=home.root, env=cli_env(home), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert bake.stdout is not None
    seen, build_dir = [], None
    for line in bake.stdout:  # until Packer's build instance is up and provisioning over ssh
        seen.append(line)
        if found := re.search(r"\(log: (.+)/packer\.log\)", line):
            build_dir = Path(found.group(1))
        if "Provisioning with shell script" in line:
            break
    assert build_dir is not None and bake.poll() is None, "".join(seen)
    os.kill(bake.pid, signal.SIGKILL)
    bake.wait(timeout=30)
    bake.stdout.close()
    return build_dir


def run_cli(h: Home, *args: str, check: bool = False, timeout: float = 300,
            **extra: str) -> subprocess.CompletedProcess[str]:
    """Run the real console script (same collection as `invoke`) in a home, with no AWS credentials."""
    argv = [sys.executable, "-c", "from imagefactory.main import program; program.run()", *args]
    done = subprocess.run(argv, cwd=h.root, env=cli_env(h, **extra), text=True, capture_output=True,
                          timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done

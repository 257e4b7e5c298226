"""Incremental bakes (`bake --parent BUILD`): the decision (pure), the rendered template (real Packer), and
one real sandbox chain: a provisioned full bake of the bundled example as a git repo, a one-line commit,
an incremental bake from it through `rebuild --stale` (stale says only the commit moved; new commit, the
parent's packages, no environment install), then a parent
past rebuild.max_chain and a parent whose AMI is gone, which both give a full bake that says why."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import cli_env, git, interrupt_at, new_home, run_cli, stop_emulator

from imagefactory import catalog
from imagefactory.catalog import Build, Catalog, ImageEntry
from imagefactory.home import Home, rootfs_cache_dir
from imagefactory.incremental import (
    AMI_DEPRECATED,
    AMI_MISSING,
    AMI_OK,
    ami_state,
    chain_length,
    decide,
    environment_inputs,
)
from imagefactory.packer import Capabilities, find_packer
from imagefactory.provision import ENVIRONMENT_STAGES, Provisioners, environment_stages_digest, provisioners
from imagefactory.recipe import Recipe, Source
from imagefactory.render import (
    VAR_FILE,
    Features,
    ParentImage,
    SshEndpoint,
    packer_vars,
    template_files,
    write_build_dir,
)
from imagefactory.sandbox import trees
from imagefactory.sandbox.archive import image_path, pack, unpack
from imagefactory.sandbox.base import ensure_base
from imagefactory.sandbox.buildroot import BuildRoot, sshd_answers
from imagefactory.sandbox.emulator import status
from imagefactory.sandbox.host import sandbox_supported
from imagefactory.sandbox.images import load as load_image
from imagefactory.sandbox.images import unpack as unpack_image
from imagefactory.sandbox.images import whole
from imagefactory.sandbox.teardown import mounts_under, remove_tree

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "hello-binder"
INPUTS = {"stages": "sha256:s", "files": {"requirements.txt": "sha256:r"}}
ENV_STAGE_MARKS = ("[10-base]", "[20-python]", "[30-server-env]", "[40-kernel-env]")


# ------------------------------------------------------------------------------ the decision (pure)

def build(bid: str, *, parent: str | None = None, status: str = "available", digest: str = "sha256:d",
          provisioned: bool = True, inputs: dict[str, Any] | None = None) -> Build:
    manifest = {"environment_inputs": INPUTS if inputs is None else inputs}
    return Build(id=bid, created="2026-01-01T00:00:00Z", status=status, target="sandbox", account="1",
                 commit="c" + bid, ref="main", recipe_digest=digest, provisioned=provisioned,
                 amis={"us-west-2": f"ami-{bid}w", "us-east-2": f"ami-{bid}e"}, image_manifest=manifest,
                 parent_build=parent)


def cat(*builds: Build, image: str = "demo") -> Catalog:
    return Catalog(images={image: ImageEntry(name=image, repo="r", recipe="recipes/x.yaml", recipe_digest="sha256:d",
                                             latest=builds[-1].id, builds=builds)})


def choose(c: Catalog, parent: str = "a", **kw: Any) -> Any:
    args: dict[str, Any] = {"image": "demo", "parent_id": parent, "provision": True, "recipe_digest": "sha256:d",
                            "inputs": INPUTS, "max_chain": 5, "amis": {"us-west-2": AMI_OK, "us-east-2": AMI_OK}}
    return decide(c, **{**args, **kw})


def test_a_parent_that_can_serve_gives_an_incremental_start_one_link_longer() -> None:
    start = choose(cat(build("a"), build("b", parent="a")), parent="b")
    assert start.incremental and start.parent.id == "b" and start.reason is None and start.chain == 2


@pytest.mark.parametrize(("change", "reason"), [
    ({"parent": "zz"}, "parent build zz is not a build of image demo in the catalog"),
    ({"provision": False}, "an API-only bake installs nothing, so there is nothing to skip"),
    ({"recipe_digest": "sha256:e"}, "the recipe changed since parent build a (d -> e)"),
    ({"inputs": {"stages": "sha256:s", "files": {"requirements.txt": "sha256:other"}}},
     "the environment changed since parent build a: requirements.txt"),
    ({"inputs": {"stages": "sha256:t", "files": INPUTS["files"]}},
     "the environment changed since parent build a: the image contract's environment stages"),
    ({"max_chain": 0}, "parent build a ends a chain of 0 incremental builds (rebuild.max_chain is 0)"),
    ({"amis": {"us-west-2": AMI_OK, "us-east-2": AMI_MISSING}},
     "parent build a's AMI in us-east-2 (ami-ae) is gone"),
    ({"amis": {"us-west-2": AMI_DEPRECATED, "us-east-2": AMI_OK}},
     "parent build a's AMI in us-west-2 (ami-aw) is deprecated"),
])
def test_each_parent_that_cannot_serve_gives_a_full_bake_saying_why(change: dict[str, Any], reason: str) -> None:
    start = choose(cat(build("a")), **change)
    assert not start.incremental and start.reason == reason


def test_failed_other_image_unprovisioned_and_old_parents_give_full_bakes() -> None:
    two = Catalog(images={**cat(build("a")).images, **cat(build("o"), image="other").images})
    assert choose(two, parent="o").reason == "parent build o is a build of image other, not demo"
    assert choose(cat(build("a", status="failed"))).reason == "parent build a is failed, not available"
    assert choose(cat(build("a", provisioned=False))).reason == "parent build a was not provisioned (API-only)"
    pruned = replace(build("a"), deprecated_at={"us-east-2": "2026-02-01T00:00:00Z"})
    assert choose(cat(pruned)).reason == "parent build a's AMI in us-east-2 was deprecated at 2026-02-01T00:00:00Z"
    old = replace(build("a"), image_manifest={"build_id": "a"})
    assert "records no environment inputs" in str(choose(cat(old)).reason)


def test_the_chain_counts_incremental_ancestors_up_to_the_limit() -> None:
    chain = (build("a"), build("b", parent="a"), build("c", parent="b"))
    by_id = {b.id: b for b in chain}
    assert [chain_length(by_id, b) for b in chain] == [0, 1, 2]
    assert choose(cat(*chain), parent="c", max_chain=3).chain == 3
    assert choose(cat(*chain), parent="c", max_chain=2).reason == (
        "parent build c ends a chain of 2 incremental builds (rebuild.max_chain is 2)")


def test_ami_states_from_describe_images() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert ami_state(None, now) == AMI_MISSING
    assert ami_state({"State": "available"}, now) == AMI_OK
    assert ami_state({"State": "deregistered"}, now) == "unavailable"
    past, future = (now - timedelta(days=1)).isoformat(), (now + timedelta(days=1)).isoformat()
    assert ami_state({"State": "available", "DeprecationTime": past}, now) == AMI_DEPRECATED
    assert ami_state({"State": "available", "DeprecationTime": future}, now) == AMI_OK


def test_environment_inputs_follow_requirement_includes(tmp_path: Path) -> None:
    (tmp_path / "binder").mkdir()
    (tmp_path / "binder/requirements.txt").write_text("-r base.txt\nsix\n")
    (tmp_path / "binder/base.txt").write_text("tabulate\n")
    (tmp_path / "hello.py").write_text("print(1)\n")
    rec = Recipe(name="demo", source=Source("r", None, "c"))
    rec = replace(rec, environment=replace(rec.environment, pip=("binder/requirements.txt",)))
    first = environment_inputs(rec, tmp_path, "sha256:s")
    assert sorted(first["files"]) == ["binder/base.txt", "binder/requirements.txt"]
    (tmp_path / "hello.py").write_text("print(2)\n")
    assert environment_inputs(rec, tmp_path, "sha256:s") == first, "a code change is not an environment change"
    (tmp_path / "binder/base.txt").write_text("tabulate==0.9\n")
    changed = environment_inputs(rec, tmp_path, "sha256:s")["files"]
    assert changed["binder/base.txt"] != first["files"]["binder/base.txt"]


def test_an_incremental_build_runs_every_stage_but_the_environment_install() -> None:
    full, incremental = provisioners(), provisioners(incremental=True)
    skipped = [s for s in full.scripts if s not in incremental.scripts]
    assert [Path(s).name for s in skipped] == ["10-base.sh", "20-python.sh", "30-server-env.sh", "40-kernel-env.sh"]
    assert all(int(Path(s).name[:2]) in ENVIRONMENT_STAGES for s in skipped)
    assert incremental.cleanup == full.cleanup, "clean-up and the secret scan are the same"
    assert environment_stages_digest().startswith("sha256:")


@pytest.mark.parametrize("target", ["aws", "sandbox"])
def test_an_incremental_render_starts_from_the_parent_ami_and_validates(tmp_path: Path, target: str) -> None:
    rec = Recipe(name="demo", source=Source("https://example.org/r.git", "main", "0123456789abcdef"))
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ssh = SshEndpoint("127.0.0.1", 2222, "kp", str(key)) if target == "sandbox" else None
    parent = ParentImage("b0", "ami-0123456789abcdef0", "ami-0fedcba987654321f", "ubuntu/images/base-20240301")
    files = template_files(Features(Capabilities((1, 6, 6)), target, True, incremental=True), ROOT / "packer/templates")
    values = packer_vars(rec, build_id="b1", target=target, factory_version="0.1.0", ssh=ssh,
                         endpoint="http://127.0.0.1:1" if target == "sandbox" else None, ssh_sources=("127.0.0.1/32",),
                         provisioners=Provisioners(("provision/a.sh",), ("provision/a.sh",)), parent=parent)
    build_dir = tmp_path / "b"
    (build_dir / "provision").mkdir(parents=True)
    (build_dir / "provision/a.sh").write_text("true\n")
    write_build_dir(build_dir, files, values)
    packer = find_packer().path
    for argv in ([packer, "validate", f"-var-file={VAR_FILE}", "."], [packer, "fmt", "-check", "."]):
        done = subprocess.run(argv, cwd=build_dir, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    assert values["source_ami"] == "ami-0123456789abcdef0"
    assert values["tags"]["imagefactory:parent-build"] == "b0"
    assert values["tags"]["imagefactory:base-ami-name"] == "ubuntu/images/base-20240301"
    assert "source_ami_filter" not in files["source.pkr.hcl"]


# ------------------------------------------------------------------ one real chain in the sandbox

@pytest.fixture(scope="module")
def chain_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    h = new_home(tmp_path_factory.mktemp("incremental") / "home")
    yield h
    stop_emulator(h)


@pytest.fixture(scope="module")
def chain(chain_home: Home, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A full bake of the bundled example (a git repo; recipe with rebuild.max_chain 1), a one-line commit,
    then an incremental bake from the full one."""
    repo = tmp_path_factory.mktemp("repo") / "hello-binder"
    shutil.copytree(EXAMPLE, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    run_cli(chain_home, "recipe", "--repo", str(repo), check=True)
    recipe_file = chain_home.recipe_path("hello-binder")
    recipe_file.write_text(recipe_file.read_text() + "rebuild:\n  max_chain: 1\n")
    full = json.loads(run_cli(chain_home, "bake", "--repo", str(repo), "--json", check=True, timeout=900).stdout)
    hello = repo / "hello.py"
    hello.write_text(hello.read_text() + "print('a one-line change')\n")
    git(repo, "commit", "-q", "-am", "one line")
    stale = json.loads(run_cli(chain_home, "stale", "--json", check=True, timeout=300).stdout)["images"][0]
    assert [r["kind"] for r in stale["reasons"]] == ["commit"] and stale["incremental"], stale
    # the path: `rebuild --stale` sees that only the commit moved and bakes incrementally
    done = run_cli(chain_home, "rebuild", "--stale", "--json", check=True, timeout=900)
    report = json.loads(done.stdout)
    assert [(p["mode"], p["parent"]) for p in report["plan"]] == [("incremental", full["build_id"])]
    (result,) = report["results"]
    assert result["status"] == "available" and result["mode"] == "incremental"
    child = builds(chain_home)[result["build_id"]]
    notes = [line.removeprefix("[hello-binder] ") for line in done.stderr.splitlines()]
    incremental = {"build_id": child.id, "parent_build": child.parent_build, "build_dir": child.build_dir,
                   "amis": child.amis, "notes": notes}
    return {"repo": repo, "full": full, "incremental": incremental, "stderr": done.stderr,
            "commit": git(repo, "rev-parse", "HEAD")}


def builds(h: Home) -> dict[str, Build]:
    return {b.id: b for b in catalog.load(h.catalog_path("sandbox")).images["hello-binder"].builds}


def packer_log(result: dict[str, Any]) -> str:
    return (Path(result["build_dir"]) / "packer.log").read_text()


@pytest.mark.network
def test_the_incremental_bake_has_the_new_commit_and_the_parents_environment(chain: dict[str, Any],
                                                                             chain_home: Home) -> None:
    full, inc = chain["full"], chain["incremental"]
    assert inc["parent_build"] == full["build_id"] and full["parent_build"] is None
    says = f"incremental: from build {full['build_id']} (AMI {full['amis']['us-west-2']}; 1 of at most 1 in a row)"
    assert says in chain["stderr"] and any(note.startswith(says) for note in inc["notes"])
    recorded = builds(chain_home)
    parent, child = recorded[full["build_id"]], recorded[inc["build_id"]]
    assert child.parent_build == parent.id and child.status == "available" and parent.parent_build is None
    assert child.commit == chain["commit"] != parent.commit
    assert child.base_ami == parent.base_ami and child.base_ami_name == parent.base_ami_name
    manifest, parent_manifest = child.image_manifest or {}, parent.image_manifest or {}
    assert manifest["repo"]["commit"] == manifest["repo"]["head"] == chain["commit"]
    assert manifest["build"] == {"mode": "incremental", "parent": parent.id}
    assert manifest["packages"] == parent_manifest["packages"], "the environment is the parent's, unchanged"
    assert manifest["environment_inputs"] == parent_manifest["environment_inputs"]
    log, parent_log = packer_log(inc), packer_log(full)
    assert all(mark in parent_log for mark in ENV_STAGE_MARKS)
    assert not any(mark in log for mark in ENV_STAGE_MARKS), "the environment install did not run"
    for mark in ("[05-prepare] done", "[50-repo] done", "[80-smoke] smoke test passed",
                 "manifest: /etc/imagefactory/manifest.json: commit", "[90-cleanup] done", "[95-secret-scan] clean"):
        assert mark in log
    # the build root was an overlay on the full build's tree, kept (not unpacked) when it was packed
    assert f"sandbox: build root on the cached tree of build {full['build_id']}'s image (overlay)" in chain["stderr"]
    assert (trees.cache_dir(chain_home) / full["build_id"] / "rootfs/etc/imagefactory/manifest.json").is_file()
    # and its own upper layer is kept there, over it: a build from this one starts without unpacking
    kept = trees.cache_dir(chain_home) / inc["build_id"]
    assert (kept / "layer/home/ubuntu/hello-binder/hello.py").is_file() and not (kept / "rootfs").exists()


def read_image(archive: Path, wanted: tuple[str, ...]) -> tuple[set[str], dict[str, str]]:
    """One streaming pass over a packed image (zstd | tar): every member's name, and the text of `wanted`."""
    names, texts = set(), {}
    with subprocess.Popen(["zstd", "-dqc", str(archive)], stdout=subprocess.PIPE) as zstd:
        assert zstd.stdout is not None
        with tarfile.open(fileobj=zstd.stdout, mode="r|") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                names.add(name)
                if name in wanted and member.isfile():
                    handle = tar.extractfile(member)
                    assert handle is not None
                    texts[name] = handle.read().decode()
    assert zstd.returncode == 0
    return names, texts


@pytest.mark.network
def test_the_incremental_image_is_a_small_layer_and_laid_out_holds_the_new_file_cleaned_like_a_full_one(
        chain: dict[str, Any], chain_home: Home, tmp_path: Path) -> None:
    hello, keys, manifest = ("home/ubuntu/hello-binder/hello.py", "home/ubuntu/.ssh/authorized_keys",
                             "etc/imagefactory/manifest.json")
    inc_id, full_id = chain["incremental"]["build_id"], chain["full"]["build_id"]
    layer = image_path(chain_home, inc_id)
    names, texts = read_image(layer, (hello, manifest))
    assert "a one-line change" in texts[hello] and json.loads(texts[manifest])["build_id"] == inc_id
    assert "etc/ssh/sshd_config" not in names and "usr/bin/python3" not in names, "only what the build changed"
    assert layer.stat().st_size * 20 < image_path(chain_home, full_id).stat().st_size
    image = load_image(layer.parent, inc_id)
    assert [(lay.build_id, lay.parent) for lay in image.layers] == [(full_id, None), (inc_id, full_id)]
    root = tmp_path / "laid-out"
    unpack_image(image, root)
    assert (root / hello).read_text() == (chain["repo"] / "hello.py").read_text()
    build_key = (Path(chain["incremental"]["build_dir"]) / "build-key.pub").read_text().split()[1]
    assert build_key not in (root / keys).read_text()
    assert (root / "etc/ssh/sshd_config").is_file() and (root / "usr/bin/python3").exists()
    assert not list((root / "etc/ssh").glob("ssh_host_*_key")), "no host keys"
    assert not (root / "tmp/imagefactory").exists()
    assert json.loads((root / manifest).read_text())["build_id"] == inc_id


@pytest.mark.network
def test_the_incremental_image_launches_with_the_new_commit(chain: dict[str, Any], chain_home: Home) -> None:
    """An instance of the layered image boots from its two layers laid out: sshd and JupyterLab answer and the
    repository is at the new commit."""
    inc_id = chain["incremental"]["build_id"]
    done = run_cli(chain_home, "launch", "hello-binder", "--sandbox", "--json", check=True, timeout=300)
    launched = json.loads(done.stdout)
    iid = launched["instance_id"]
    root = chain_home.sandbox_dir / "instances" / iid
    try:
        assert f"sandbox: unpacking the image of build {inc_id} (2 layer(s))" in done.stderr
        assert "a one-line change" in (root / "home/ubuntu/hello-binder/hello.py").read_text()
        assert sshd_answers(launched["ssh_port"])
        status = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--noproxy", "*",
                                 f"http://127.0.0.1:{launched['jupyter_port']}/api/status"],
                                capture_output=True, text=True, timeout=60)
        assert status.stdout == "403", "JupyterLab answers (and wants its token)"
    finally:
        gone = json.loads(run_cli(chain_home, "terminate", iid, "--yes", "--json", check=True).stdout)
    assert gone["state"] in ("shutting-down", "terminated") and not root.exists()


@pytest.mark.network
def test_a_parent_at_the_chain_limit_gives_a_full_bake_saying_why(chain: dict[str, Any], chain_home: Home) -> None:
    inc = chain["incremental"]["build_id"]
    reason = f"full bake: parent build {inc} ends a chain of 1 incremental builds (rebuild.max_chain is 1)"
    argv = [sys.executable, "-c", "from imagefactory.main import program; program.run()", "bake", "--repo",
            str(chain["repo"]), "--parent", inc]
    # decided before anything starts; a full bake is what the chain's first bake showed: stop this one here
    code, stderr = interrupt_at(argv, chain_home.root, cli_env(chain_home), "full bake:", signal.SIGINT)
    assert reason in stderr and code == 130
    assert builds(chain_home)[inc].parent_build == chain["full"]["build_id"]


@pytest.mark.network
def test_a_parent_whose_ami_is_gone_gives_a_full_bake_saying_why(chain: dict[str, Any], chain_home: Home) -> None:
    parent = builds(chain_home)[chain["full"]["build_id"]]
    info = status(chain_home.emulator_dir)
    assert info is not None
    ec2 = boto3.client("ec2", region_name="us-east-2", endpoint_url=info.endpoint, aws_access_key_id="x",
                       aws_secret_access_key="x")
    ec2.deregister_image(ImageId=parent.amis["us-east-2"])
    reason = f"full bake: parent build {parent.id}'s AMI in us-east-2 ({parent.amis['us-east-2']}) is gone"
    argv = [sys.executable, "-c", "from imagefactory.main import program; program.run()", "bake", "--repo",
            str(chain["repo"]), "--parent", parent.id]
    # the decision is made before anything starts; the full bake it leads to is the one above: stop it here
    code, stderr = interrupt_at(argv, chain_home.root, cli_env(chain_home), "full bake:", signal.SIGINT)
    assert reason in stderr and code == 130


# ------------------------------------------------------------------ a build root from an image

@pytest.mark.parametrize("cached", [False, True], ids=["unpacked", "overlay-on-cached-tree"])
def test_a_build_root_from_an_image_is_set_up_inside_its_container(tmp_path: Path, cached: bool) -> None:
    """An image is untrusted (a repository's code ran in it as root): a link it planted where the setup
    writes (the sudoers file, the user's authorized_keys) must lead inside the tree, never to the host;
    also when the build root is an overlay on the image's cached tree, which the setup leaves unchanged."""
    ok, why = sandbox_supported()
    assert ok, f"the sandbox rootfs cannot run here: {why}"
    tree, witness = tmp_path / "tree", tmp_path / "host-witness"
    witness.write_text("host file\n")
    unpack(ensure_base(rootfs_cache_dir(), progress=lambda _: None), tree)
    (tree / "etc/sudoers.d/90-imagefactory").symlink_to(witness)
    subprocess.run(["chroot", str(tree), "useradd", "--create-home", "--user-group", "ubuntu"], check=True)
    (tree / "home/ubuntu/.ssh").mkdir(mode=0o700)
    (tree / "home/ubuntu/.ssh/authorized_keys").symlink_to(witness)
    image = tmp_path / "parent.tar.zst"
    pack(tree, image)
    remove_tree(tree)
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    pub = (tmp_path / "key.pub").read_text()
    cache = tmp_path / "trees" if cached else None
    with BuildRoot(rootfs_cache_dir(), tmp_path / "work", login_user="ubuntu", authorized_key=pub,
                   image=whole(image), trees=cache) as root:
        assert sshd_answers(root.port)
        assert bool(mounts_under(root.root)) == cached and root.served_from_cache is False
        keys = root.run(["cat", "/home/ubuntu/.ssh/authorized_keys"])
        assert keys.returncode == 0 and keys.stdout.strip() == pub.strip()
        assert root.run(["sudo", "-n", "-u", "ubuntu", "sudo", "-n", "true"]).returncode == 0
        assert root.run(["sh", "-c", "ls /etc/ssh/ssh_host_*_key"]).returncode == 0, "fresh host keys"
    assert witness.read_text() == "host file\n", "the setup wrote through a planted link to the host"
    if cached:
        tree = tmp_path / "trees/parent/rootfs"
        assert (tree / "etc/sudoers.d/90-imagefactory").readlink() == witness, "the cached tree is unchanged"
        assert not (tree / "etc/ssh/ssh_host_ed25519_key").exists()
    trees.unmount(root.root)
    assert not mounts_under(tmp_path)

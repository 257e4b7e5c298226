"""Sandbox bakes with real provisioning: the same Packer template and scripts as on AWS, run over SSH in a
local Debian rootfs; the packed image is then opened and checked against the image contract."""

from __future__ import annotations

import json
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MakeRepo, run_cli
from isolation_probe import ALL_REFUSED, plant

from imagefactory import catalog
from imagefactory.home import Home
from imagefactory.provision import TOKEN_FILE
from imagefactory.sandbox.archive import image_path, unpack
from imagefactory.sandbox.teardown import remove_tree

pytestmark = pytest.mark.network  # provisioned bakes: uv and apt install from the package indexes

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hello-binder"
FAKE_KEY_ID = "AKIA" + "Q7RZ2XJ4WN5KTB3M"  # shaped like an access key id; assembled so no scanner flags this file


@pytest.fixture(scope="module")
def example_bake(example_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The bundled example with an isolation probe as its postBuild (tests/isolation_probe.py), baked once."""
    repo = tmp_path_factory.mktemp("example") / EXAMPLE.name
    shutil.copytree(EXAMPLE, repo)
    witness = plant(repo, tmp_path_factory.mktemp("host"))
    try:
        done = run_cli(example_home, "bake", "--repo", str(repo), "--json", check=True, timeout=900)
        yield {"result": json.loads(done.stdout), "stderr": done.stderr, "witness": witness}
    finally:
        witness.close()


@pytest.fixture(scope="module")
def example_image(example_bake: dict, example_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("image") / "root"
    unpack(image_path(example_home, example_bake["result"]["build_id"]), root)
    yield root
    remove_tree(root)


def test_example_bake_provisions_for_real_and_records_the_manifest(example_bake: dict, example_home: Home) -> None:
    result = example_bake["result"]
    assert result["provisioned"] is True and sorted(result["amis"]) == ["us-east-2", "us-west-2"]
    build = catalog.load(example_home.catalog_path("sandbox")).images["hello-binder"].latest_build()
    assert build is not None and build.provisioned and build.python == "3.11"
    manifest = build.image_manifest
    assert manifest is not None and manifest["build_id"] == result["build_id"]
    assert manifest["recipe"]["digest"] == build.recipe_digest
    names = json.dumps(manifest["packages"]).lower()
    assert "tabulate" in names and "requests" in names
    assert manifest["versions"]["packer"] == build.packer_version
    log = (Path(result["build_dir"]) / "packer.log").read_text()
    assert "[80-smoke] smoke test passed" in log
    assert "[95-secret-scan] clean" in log
    assert not (Path(result["build_dir"]) / "rootfs").exists(), "the unpacked tree is removed after packing"
    mounts = Path("/proc/mounts").read_text()
    assert str(example_home.root) not in mounts


def test_a_repositorys_post_build_cannot_touch_the_host(example_bake: dict) -> None:
    """The probe ran as the repo's postBuild (with sudo): no host device, no /sys or /proc/sys write, no
    signal to a host process, no write through /proc/1/root, no mount, no way into PID 1's namespaces."""
    log = (Path(example_bake["result"]["build_dir"]) / "packer.log").read_text()
    assert "isolation probe: refused: signal host process" in log
    assert ALL_REFUSED in log and "ESCAPED" not in log
    example_bake["witness"].assert_host_unchanged()


def test_packed_image_holds_the_image_contract(example_image: Path, example_bake: dict) -> None:
    manifest = json.loads((example_image / "etc/imagefactory/manifest.json").read_text())
    assert manifest["build_id"] == example_bake["result"]["build_id"]
    spec = json.loads((example_image / "opt/imagefactory/server/share/jupyter/kernels/hello-binder/kernel.json")
                      .read_text())
    assert spec["argv"][0].startswith("/opt/imagefactory/kernel/")
    unit = (example_image / "etc/systemd/system/imagefactory-jupyter.service").read_text()
    assert "--ip=127.0.0.1" in unit and "--port=${IF_JUPYTER_PORT}" in unit
    assert "IF_JUPYTER_PORT=8889" in (example_image / "etc/imagefactory/jupyter.env").read_text()
    wants = example_image / "etc/systemd/system/multi-user.target.wants/imagefactory-jupyter.service"
    assert wants.is_symlink()
    assert (example_image / "home/ubuntu/hello-binder/hello.py").is_file()
    keys = example_image / "home/ubuntu/.ssh/authorized_keys"
    build_key = (Path(example_bake["result"]["build_dir"]) / "build-key.pub").read_text().split()[1]
    assert not keys.exists() or build_key not in keys.read_text()
    assert not (example_image / "home/ubuntu" / TOKEN_FILE).exists(), "token must not be baked"
    assert not list((example_image / "etc/ssh").glob("ssh_host_*_key")), "host keys must not be baked"
    assert (example_image / "etc/machine-id").read_text().strip() == ""
    assert not (example_image / "tmp/imagefactory").exists()


def test_a_package_that_does_not_exist_fails_with_the_installers_error(home: Home, make_repo: MakeRepo) -> None:
    repo = make_repo({"runtime.txt": "python-3.11\n",
                      "requirements.txt": "imagefactory-no-such-package-q8z==1.0\n"}, name="ghost-package")
    done = run_cli(home, "bake", "--repo", repo.as_uri(), "--no-resolve", timeout=900)
    assert done.returncode == 1
    assert "imagefactory-no-such-package-q8z" in done.stderr and "packer build failed" in done.stderr
    (build,) = catalog.load(home.catalog_path("sandbox")).images["ghost-package"].builds
    assert build.status == "failed" and not build.amis
    assert not image_path(home, build.id).exists()
    assert str(home.root) not in Path("/proc/mounts").read_text()
    build_dir = Path(build.build_dir or "")
    assert stat.S_IMODE(build_dir.stat().st_mode) == 0o700, "a failed build's folder is the owner's only"
    assert not (build_dir / "provision" / "repo.tar").exists(), "and keeps no copy of the repository"


def test_a_planted_cloud_key_is_stopped_by_the_secret_scan(home: Home, make_repo: MakeRepo) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzz" + "SECRETVALUE1"
    repo = make_repo({"runtime.txt": "python-3.11\n", "requirements.txt": "six\n",
                      "config/aws.ini": f"[default]\naws_access_key_id = {FAKE_KEY_ID}\n"
                                        f"aws_secret_access_key = {secret}\n"}, name="leaky")
    done = run_cli(home, "bake", "--repo", repo.as_uri(), timeout=900)
    assert done.returncode == 1
    assert "config/aws.ini" in done.stderr
    build = catalog.load(home.catalog_path("sandbox")).images["leaky"].builds[-1]
    assert build.status == "failed"
    log = (Path(build.build_dir) / "packer.log").read_text()
    for text in (done.stdout, done.stderr, log):
        assert FAKE_KEY_ID not in text and secret not in text


def test_a_python_the_sandbox_lacks_stops_first_and_an_override_is_recorded(home: Home,
                                                                            make_repo: MakeRepo) -> None:
    repo = make_repo({"runtime.txt": "python-3.8\n", "requirements.txt": "six==1.16.0\n"}, name="old-python")
    done = run_cli(home, "bake", "--repo", repo.as_uri())
    assert done.returncode == 1
    assert re.search(r"wants Python 3\.8 .*--python 3\.11", done.stderr)
    assert not (home.builds_dir("sandbox") / "old-python").exists()
    run_cli(home, "bake", "--repo", repo.as_uri(), "--python", "3.11", check=True, timeout=900)
    build = catalog.load(home.catalog_path("sandbox")).images["old-python"].latest_build()
    assert build is not None and build.python == "3.11" and build.python_override

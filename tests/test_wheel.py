"""The wheel, installed (not editable) into a fresh venv, is a working factory from any folder: it carries
every package and the Packer contract, and bakes (API-only, in the sandbox) and lists the catalog.

Its dependencies come from the test venv (a .pth line), not from the package index, so this test needs no
network; scripts/test repeats it with a full install from the index (`scripts/wheel-check`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import GIT_ENV, REPO_ROOT, MakeRepo, new_home, stop_emulator

from imagefactory.home import Home


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # the test venv's setuptools (test extra), so that building needs no index either
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(REPO_ROOT)], check=True, capture_output=True, text=True, timeout=300)
    (found,) = out.glob("imagefactory-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    site = next((root / "lib").glob("python3*/site-packages"))
    (site / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(root / "bin/python"), "install", "-q", "--no-deps",
                    str(wheel)], check=True, capture_output=True, text=True, timeout=300)
    return root


def test_the_wheel_holds_every_package_and_the_contract(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {p.parent.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "imagefactory").rglob("__init__.py")}
    assert packages and {f"{p}/__init__.py" for p in packages} <= names
    shipped = {f"imagefactory/contract_data/{p.relative_to(REPO_ROOT / 'packer').as_posix()}"
               for p in (REPO_ROOT / "packer").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert any(n.endswith("templates/source.pkr.hcl.j2") for n in shipped) and shipped <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    metadata = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: BSD-3-Clause" in metadata
    assert "Requires-Dist: uv" in metadata


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """An empty folder far from the checkout; the home the test makes in it has its emulator stopped."""
    folder = tmp_path / "anywhere"
    folder.mkdir()
    yield folder
    stop_emulator(Home(folder / "home"))


def test_the_installed_wheel_bakes_and_lists_from_an_empty_folder(venv: Path, outside: Path,
                                                                   make_repo: MakeRepo) -> None:
    python = str(venv / "bin/python")
    where = subprocess.run([python, "-c", "import imagefactory, imagefactory.contract as c; "
                            "print(imagefactory.__file__); print(c.shipped())"],
                           cwd=outside, check=True, capture_output=True, text=True).stdout.split()
    assert all(p.startswith(str(venv)) for p in where), where
    repo = make_repo({"requirements.txt": "six==1.16.0\nattrs\n"}, name="mine")
    home = new_home(outside / "home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"HOME": str(outside), "IMAGEFACTORY_HOME": str(home.root), "IMAGEFACTORY_OFFLINE": "1", **GIT_ENV,
                "PATH": f"{venv / 'bin'}:{env['PATH']}"})
    cli = str(venv / "bin/imagefactory")
    baked = subprocess.run([cli, "bake", "--repo", repo.as_uri(), "--sandbox", "--api-only", "--no-resolve", "--json"],
                           cwd=outside, env=env, capture_output=True, text=True, timeout=600)
    assert baked.returncode == 0, baked.stderr
    assert "Traceback" not in baked.stderr
    result = json.loads(baked.stdout)
    assert result["image"] == "mine" and sorted(result["amis"]) == ["us-east-2", "us-west-2"]
    rendered = Path(result["build_dir"]) / "source.pkr.hcl"
    assert rendered.is_file() and "amazon-ebs" in rendered.read_text()
    listed = subprocess.run([cli, "catalog", "--json"], cwd=outside, env=env, capture_output=True, text=True,
                            timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert [(r["image"], r["target"]) for r in json.loads(listed.stdout)] == [("mine", "sandbox")]

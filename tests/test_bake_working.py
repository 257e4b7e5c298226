"""A working environment, proven in a real (sandbox) bake: the code's imports measured, the system
packages' libraries present, data downloaded and checked, a notebook run; and the in-image helpers on
their own (a checksum mismatch, the import policy)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import commit_repo, git, new_home, run_cli, stop_emulator, write_files

from imagefactory import catalog
from imagefactory.recipe import load_recipe, write_recipe
from imagefactory.recipe.model import Recipe

FILES = Path(__file__).resolve().parent.parent / "packer" / "files"


def cells(*sources: str) -> str:
    return json.dumps({"cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "outputs": [],
                                  "execution_count": None, "source": s} for i, s in enumerate(sources)],
                       "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


REPO = {
    "runtime.txt": "python-3.11\n",
    "requirements.txt": "python-magic==0.4.27\n",
    "scripts/report.py": "import json\nimport imp\nimport magic\nimport imagefactory_absent_q8z\n",
    "notebooks/helper.py": "VALUE = 42\n",
    "notebooks/check.ipynb": cells(
        "import magic\nimport helper\nfrom pathlib import Path",
        "text = Path('../data/sample/greeting.txt').read_text()\nassert text == 'hello data\\n', text",
        "assert magic.from_buffer(text.encode()).startswith('ASCII text')\nassert helper.VALUE == 42"),
}


def tarball(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture(scope="module")
def data_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on loopback (the sandbox's build container shares the host's network)."""
    root = tmp_path_factory.mktemp("served")
    (root / "sample.tar.gz").write_bytes(tarball({"greeting.txt": b"hello data\n"}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def working_bake(tmp_path_factory: pytest.TempPathFactory, data_server: tuple[str, Path]) -> Iterator[dict]:
    """One provisioned bake for every bake-side assert: derive, turn the notebook on, add a data entry."""
    home = new_home(tmp_path_factory.mktemp("working") / "home")
    repo = commit_repo(tmp_path_factory.mktemp("repos") / "proven", REPO)
    try:
        derived = run_cli(home, "recipe", "--repo", str(repo), "--json", check=True)
        url, root = data_server
        path = home.recipe_path("proven")
        data = load_recipe(path).to_dict()
        data["smoke"]["notebooks"][0]["run"] = True
        data["data"] = [{"url": f"{url}/sample.tar.gz", "dest": "data/sample", "unpack": True,
                         "sha256": hashlib.sha256((root / "sample.tar.gz").read_bytes()).hexdigest()}]
        write_recipe(path, Recipe.from_dict(data), force=True)
        done = run_cli(home, "bake", "--repo", str(repo), "--json", check=True, timeout=900)
        yield {"home": home, "derived": json.loads(derived.stdout), "result": json.loads(done.stdout),
               "stderr": done.stderr}
    finally:
        stop_emulator(home)


@pytest.mark.network  # uv and apt install from the package indexes
def test_derivation_adds_the_system_package_and_lists_the_notebook(working_bake: dict) -> None:
    derived = working_bake["derived"]
    assert derived["recipe"]["environment"]["apt"] == ["libmagic1"]
    assert derived["system_packages"][0]["reason"] == "loads libmagic.so.1 at import"
    assert derived["recipe"]["smoke"]["notebooks"] == [{"path": "notebooks/check.ipynb", "run": False,
                                                        "timeout": 600}]
    missing = [m for m in derived["imports"]["modules"] if m["kind"] == "missing"]
    assert [(m["module"], m["sites"]) for m in missing] == [("imagefactory_absent_q8z", ["scripts/report.py:4"])]


@pytest.mark.network
def test_the_bake_records_imports_system_data_and_the_notebook(working_bake: dict) -> None:
    home, result = working_bake["home"], working_bake["result"]
    build = catalog.load(home.catalog_path("sandbox")).images["proven"].latest_build()
    assert build is not None and build.status == "available" and build.image_manifest is not None
    manifest = build.image_manifest
    # the code's imports, measured in the kernel env: json, imp (stdlib at 3.11), pathlib, magic ok; the
    # absent one failed as a warning (the recipe claims nothing of it), so the bake went on
    assert manifest["imports"]["ok"] == 4
    (failed,) = manifest["imports"]["failed"]
    assert failed["module"] == "imagefactory_absent_q8z" and failed["kind"] == "missing" and not failed["fatal"]
    assert manifest["system"]["missing"] == [] and manifest["system"]["libraries"]["libmagic.so.1"]
    (data,) = manifest["data"]
    assert data["dest"] == "data/sample" and data["bytes"] > 0 and data["sha256"]
    (notebook,) = manifest["notebooks"]
    assert notebook["path"] == "notebooks/check.ipynb" and notebook["ok"] is True and notebook["seconds"] > 0
    log = (Path(result["build_dir"]) / "packer.log").read_text()
    assert "smoke: code import imagefactory_absent_q8z (missing) failed (warning)" in log
    assert "notebook: notebooks/check.ipynb ran in" in log and "data: [0]" in log
    assert manifest["disk_used_bytes"] > 100_000_000
    stderr = working_bake["stderr"]
    assert re.search(r"image: \d+\.\d\d GiB used; storing it costs about \$\d+\.\d\d/month "
                     r"\(us-east-2 \$\d+\.\d\d, us-west-2 \$\d+\.\d\d; EBS snapshots, bundled table", stderr)
    assert "imports: 4 of the code's imports work in the image; 1 failed: imagefactory_absent_q8z (warning)" in stderr
    assert re.search(r"notebook: notebooks/check\.ipynb passed in \d", stderr)


def run_helper(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(FILES / name), *args], capture_output=True, text=True, timeout=60)


def test_a_checksum_mismatch_names_the_entry(tmp_path: Path, data_server: tuple[str, Path]) -> None:
    url, _ = data_server
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data": [{"url": f"{url}/sample.tar.gz", "sha256": "0" * 64,
                                            "dest": "data/x", "unpack": True}]}))
    (tmp_path / "repo").mkdir()
    done = run_helper("if_data.py", str(config), str(tmp_path / "repo"), "nobody", str(tmp_path / "out.json"))
    assert done.returncode == 1
    assert f"entry data[0] ({url}/sample.tar.gz -> data/x) failed: sha256 mismatch" in done.stdout
    assert not (tmp_path / "repo" / "data" / "x").exists()


def test_a_failed_import_fails_only_for_modules_the_recipe_claims(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    modules = [{"module": "json", "kind": "stdlib", "fail": False},
               {"module": "imagefactory_absent_q8z", "kind": "missing", "fail": False}]
    config.write_text(json.dumps({"smoke": {"required": [], "if_installed": [], "modules": modules}}))
    out = tmp_path / "imports.json"
    assert run_helper("if_smoke_imports.py", str(config), str(tmp_path), str(out)).returncode == 0
    assert json.loads(out.read_text())["ok"] == 1
    modules[1] = {"module": "imagefactory_absent_q8z", "kind": "provided", "fail": True}
    config.write_text(json.dumps({"smoke": {"required": [], "if_installed": [], "modules": modules}}))
    done = run_helper("if_smoke_imports.py", str(config), str(tmp_path), str(out))
    assert done.returncode == 1 and "imagefactory_absent_q8z (provided) FAILED" in done.stdout
    assert json.loads(out.read_text())["failed"][0]["fatal"] is True


def test_a_git_data_source_is_checked_out_at_its_commit(tmp_path: Path) -> None:
    source = tmp_path / "data-repo"
    source.mkdir()
    git(source, "init", "-q", "-b", "main")
    write_files(source, {"obs.csv": "t,q\n0,1\n"})
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "first")
    first = git(source, "rev-parse", "HEAD")
    write_files(source, {"obs.csv": "t,q\n0,2\n"})
    git(source, "commit", "-q", "-am", "second")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data": [{"git": source.as_uri(), "commit": first, "dest": "data/obs"}]}))
    (tmp_path / "repo").mkdir()
    out = tmp_path / "out.json"
    done = run_helper("if_data.py", str(config), str(tmp_path / "repo"), "root", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "repo" / "data" / "obs" / "obs.csv").read_text() == "t,q\n0,1\n"
    (record,) = json.loads(out.read_text())
    assert record["commit"] == first and record["bytes"] > 0


def test_an_archive_member_leaving_dest_is_refused(tmp_path: Path) -> None:
    served = tmp_path / "evil.tar.gz"
    served.write_bytes(tarball({"../escaped.txt": b"x"}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"data": [{"url": f"http://127.0.0.1:{server.server_port}/evil.tar.gz",
                                                "sha256": hashlib.sha256(served.read_bytes()).hexdigest(),
                                                "dest": "data/x", "unpack": True}]}))
        (tmp_path / "repo").mkdir()
        done = run_helper("if_data.py", str(config), str(tmp_path / "repo"), "root", str(tmp_path / "out.json"))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert done.returncode == 1 and "archive member '../escaped.txt' leaves data/x" in done.stdout
    assert not (tmp_path / "repo" / "data" / "escaped.txt").exists()


def test_the_storage_line_prices_each_region_from_the_table_and_never_guesses() -> None:
    from imagefactory.pricing import image_storage

    table = {"compiled": "2026-11-27", "ebs_snapshot_gb_month": {"us-west-2": 0.05, "eu-central-1": 0.054}}
    line = image_storage(table, 10 * 2**30, ["us-west-2", "eu-central-1", "ap-south-1"])
    assert line == ("image: 10.00 GiB used; storing it costs about $1.04/month (us-west-2 $0.50, eu-central-1 "
                    "$0.54, ap-south-1 price unknown; EBS snapshots, bundled table (EBS prices compiled 2026-11-27))")

"""packer/scripts and packer/files: shellcheck-clean stages that follow the house rules, and the Python
helpers the stages call (config reader, unit rendering, secret scan, Pipfile, smoke import names)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

PACKER = Path(__file__).resolve().parents[1] / "packer"
SCRIPTS = sorted((PACKER / "scripts").glob("*.sh"))
SHELL_FILES = SCRIPTS + sorted((PACKER / "files").glob("*.sh"))
STAGES = [p for p in SCRIPTS if p.name != "lib.sh"]


def helper(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, PACKER / "files" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_helper(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PACKER / "files" / f"{name}.py"), *args], capture_output=True,
                          text=True, check=False)


# ------------------------------------------------------------------------------------- shell rules

@pytest.mark.parametrize("script", SHELL_FILES, ids=lambda p: p.name)
def test_shellcheck_clean(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is required (apt-get install shellcheck)"
    done = subprocess.run([shellcheck, "-x", "-S", "style", str(script)], capture_output=True, text=True,
                          cwd=script.parent, check=False)
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("script", STAGES, ids=lambda p: p.name)
def test_stage_follows_the_house_rules(script: Path) -> None:
    text = script.read_text()
    assert re.fullmatch(r"\d\d-[a-z0-9-]+\.sh", script.name)
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert f"\nIF_STAGE={script.stem}\n" in text
    assert 'source "${IF_DIR:?IF_DIR is not set}/scripts/lib.sh"' in text
    assert "systemctl start" not in text, "nothing is started during a bake"


def test_every_file_a_stage_uses_exists() -> None:
    used = set()
    for script in SCRIPTS:
        used |= set(re.findall(r"\$(?:files|IF_DIR/files)/([\w.-]+)", script.read_text()))
    assert used, "stages use files from packer/files"
    assert sorted(u for u in used if not (PACKER / "files" / u).is_file()) == []


def test_units_point_at_installed_paths() -> None:
    unit = (PACKER / "files/imagefactory-jupyter.service").read_text()
    assert "--ip=127.0.0.1" in unit and "EnvironmentFile=/etc/imagefactory/jupyter.env" in unit
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.MULTILINE)
    assert exec_start and "token" not in exec_start.group(1).lower(), "the token never sits on a command line"
    idle = (PACKER / "files/imagefactory-idle.service").read_text()
    assert "/opt/imagefactory/bin/if_idle_check.py" in idle
    assert "systemctl\", \"poweroff" in (PACKER / "files/if_idle_check.py").read_text()


# --------------------------------------------------------------------------------------- if_config

def test_if_config_prints_values_verbatim(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"a": {"b": "x $(y)\nz"}, "n": None, "t": True, "l": ["p q", "r"]}))
    assert run_helper("if_config", "get", str(cfg), "a.b").stdout == "x $(y)\nz"
    assert run_helper("if_config", "get", str(cfg), "n").stdout == ""
    assert run_helper("if_config", "get", str(cfg), "t").stdout == "true"
    assert run_helper("if_config", "list", str(cfg), "l").stdout == "p q\0r\0"
    missing = run_helper("if_config", "get", str(cfg), "a.c")
    assert missing.returncode != 0 and "no key 'a.c'" in missing.stderr


# --------------------------------------------------------------------------------------- if_render

def test_render_refuses_unsafe_values() -> None:
    render = helper("if_render")
    config = {"login_user": "ubuntu", "jupyter": {"port": 8889}, "autostop_minutes": None,
              "kernel": {"name": "k"}}
    assert render.dropin(config, "/home/ubuntu", "/home/ubuntu/r") == (
        "[Service]\nUser=ubuntu\nWorkingDirectory=/home/ubuntu/r\n")
    assert "IF_IDLE_MINUTES" not in render.env_file(config, "/home/ubuntu", "/home/ubuntu/r")
    with pytest.raises(SystemExit):
        render.dropin({**config, "login_user": "root\nExecStartPre=/bin/evil"}, "/home/u", "/home/u/r")
    with pytest.raises(SystemExit):
        render.env_file(config, "/home/u\nX=1", "/home/u/r")
    assert json.loads(render.server_config(config))["MappingKernelManager"]["default_kernel_name"] == "k"


# ---------------------------------------------------------------------------------- if_secret_scan

def test_secret_scan_names_file_and_kind_never_the_secret(tmp_path: Path) -> None:
    key_id = "AKIA" + "IOSFODNN7EXAMPLE"
    (tmp_path / "home/u/.aws").mkdir(parents=True)
    (tmp_path / "home/u/.aws/credentials").write_text(
        f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {'w' * 40}\n")
    (tmp_path / "home/u/.ssh").mkdir()
    (tmp_path / "home/u/.ssh/id_rsa").write_text("-----BEGIN OPENSSH " + "PRIVATE KEY-----\nAAAA\n")
    (tmp_path / "home/u/.jupyter").mkdir()
    (tmp_path / "home/u/.jupyter/imagefactory-token").write_text("t" * 64)
    vendored = tmp_path / "opt/env/lib/python3.11/site-packages/botocore"
    vendored.mkdir(parents=True)
    (vendored / "docs.txt").write_text(key_id)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/ok.conf").write_text("AKIAnotakey and nothing else\n")
    done = run_helper("if_secret_scan", str(tmp_path / "home"), str(tmp_path / "opt"), str(tmp_path / "etc"))
    assert done.returncode == 1
    lines = sorted(line for line in done.stdout.splitlines() if line.startswith("SECRET "))
    creds = tmp_path / "home/u/.aws/credentials"
    assert lines == sorted([
        f"SECRET {creds}: AWS access key ID",
        f"SECRET {creds}: AWS secret access key",
        f"SECRET {tmp_path}/home/u/.jupyter/imagefactory-token: JupyterLab token file "
        "(must be made at first boot, not baked)",
        f"SECRET {tmp_path}/home/u/.ssh/id_rsa: private key (PEM)",
    ])
    assert key_id not in done.stdout and "w" * 40 not in done.stdout


def test_secret_scan_passes_a_clean_tree_and_honours_exclude(tmp_path: Path) -> None:
    (tmp_path / "clean").mkdir()
    (tmp_path / "clean/readme").write_text("nothing here\n")
    (tmp_path / "skip").mkdir()
    (tmp_path / "skip/key.pem").write_text("-----BEGIN RSA " + "PRIVATE KEY-----\n")
    done = run_helper("if_secret_scan", "--exclude", str(tmp_path / "skip"), str(tmp_path))
    assert done.returncode == 0 and "0 finding(s)" in done.stdout


# -------------------------------------------------------------------------------------- if_pipfile

def test_pipfile_without_lock_uses_its_specifiers(tmp_path: Path) -> None:
    (tmp_path / "Pipfile").write_text(
        '[[source]]\nurl = "https://pypi.org/simple"\nname = "pypi"\n\n'
        '[packages]\nrequests = "*"\nnumpy = ">=1.20"\nrich = {version = "==13.0", extras = ["jupyter"]}\n'
        'mylib = {path = "./lib", editable = true}\n\n[dev-packages]\npytest = "*"\n')
    lines = helper("if_pipfile").convert(str(tmp_path / "Pipfile"))
    assert lines == [f"-e {tmp_path}/lib", "numpy>=1.20", "requests", "rich[jupyter]==13.0"]


def test_pipfile_lock_wins(tmp_path: Path) -> None:
    (tmp_path / "Pipfile").write_text('[packages]\nrequests = "*"\n')
    (tmp_path / "Pipfile.lock").write_text(json.dumps({
        "_meta": {"sources": [{"url": "https://pypi.org/simple"}, {"url": "https://extra.example/simple"}]},
        "default": {"requests": {"version": "==2.31.0", "markers": "python_version >= '3.7'"},
                    "pkg": {"git": "https://github.com/o/pkg.git", "ref": "abc123"}},
        "develop": {"pytest": {"version": "==8.0.0"}}}))
    lines = helper("if_pipfile").convert(str(tmp_path / "Pipfile"))
    assert lines == ["--extra-index-url https://extra.example/simple",
                     "pkg @ git+https://github.com/o/pkg.git@abc123",
                     "requests==2.31.0 ; python_version >= '3.7'"]


# -------------------------------------------------------------------------------- if_smoke_imports

def test_import_names_from_table_top_level_record_and_fallback(tmp_path: Path) -> None:
    smoke = helper("if_smoke_imports")
    top = tmp_path / "Foo_Bar-1.0.dist-info"
    top.mkdir()
    (top / "top_level.txt").write_text("foobar\n_foobar_c\n")
    rec = tmp_path / "baz_pkg-2.0.dist-info"
    rec.mkdir()
    (rec / "RECORD").write_text("bazmod/__init__.py,sha256=x,1\nbazmod/sub/__init__.py,,\nsolo.py,,\n"
                                "baz_pkg-2.0.dist-info/METADATA,,\n__editable__.baz.pth,,\n")
    dists = {"foo-bar": str(top), "baz-pkg": str(rec)}
    assert smoke.import_names("scikit-learn", dists) == ["sklearn"]
    assert smoke.import_names("PyYAML", dists) == ["yaml"]
    assert smoke.import_names("foo_bar", dists) == ["foobar"]
    assert smoke.import_names("baz-pkg", dists) == ["bazmod", "solo"]
    assert smoke.import_names("some-thing", dists) == ["some_thing"]


def test_requirement_and_conda_names(tmp_path: Path) -> None:
    smoke = helper("if_smoke_imports")
    (tmp_path / "base.txt").write_text("numpy==1.0  # pinned\n")
    (tmp_path / "requirements.txt").write_text(
        "-r base.txt\n--index-url https://x\nrequests[socks]>=2 ; python_version>'3'\n"
        "git+https://github.com/o/r.git\n-e .\n\nscikit-learn\n")
    assert smoke.requirement_names(str(tmp_path / "requirements.txt"), set()) == ["numpy", "requests",
                                                                                  "scikit-learn"]
    (tmp_path / "environment.yml").write_text(
        "name: x\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.9\n  - conda-forge::pandas>=1\n"
        "  - pip\n  - pip:\n    - seaborn==0.12\n")
    assert smoke.conda_names(str(tmp_path / "environment.yml")) == ["python", "pandas", "pip", "seaborn"]

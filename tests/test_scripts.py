"""packer/scripts and packer/files: shellcheck-clean stages that follow the house rules, and the Python
helpers the stages call (config reader, unit rendering, secret scan, Pipfile, smoke import names, idle
auto-stop, the smoke test's bounded waits)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from conftest import load_module

from imagefactory.home import rootfs_cache_dir
from imagefactory.provision import REMOTE_DIR, TOKEN_FILE, provision_config
from imagefactory.recipe.model import Recipe, Source
from imagefactory.sandbox.archive import unpack
from imagefactory.sandbox.base import ensure_base
from imagefactory.sandbox.teardown import remove_tree

PACKER = Path(__file__).resolve().parents[1] / "packer"
SCRIPTS = sorted((PACKER / "scripts").glob("*.sh"))
SHELL_FILES = SCRIPTS + sorted((PACKER / "files").glob("*.sh"))
STAGES = [p for p in SCRIPTS if p.name != "lib.sh"]


def helper(name: str) -> ModuleType:
    return load_module(name, PACKER / "files" / f"{name}.py")


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
    config = {"login_user": "ubuntu", "jupyter": {"port": 8889, "token_file": TOKEN_FILE}, "autostop_minutes": None,
              "kernel": {"name": "k"}}
    assert render.dropin(config, "/home/ubuntu", "/home/ubuntu/r") == (
        "[Service]\nUser=ubuntu\nWorkingDirectory=/home/ubuntu/r\n")
    assert "IF_IDLE_MINUTES" not in render.env_file(config, "/home/ubuntu", "/home/ubuntu/r")
    with pytest.raises(SystemExit):
        render.dropin({**config, "login_user": "root\nExecStartPre=/bin/evil"}, "/home/u", "/home/u/r")
    with pytest.raises(SystemExit):
        render.env_file(config, "/home/u\nX=1", "/home/u/r")
    assert f"JUPYTER_TOKEN_FILE=/home/ubuntu/{TOKEN_FILE}\n" in render.env_file(config, "/home/ubuntu", "/home/u/r")
    for bad in ("../../etc/shadow", "/etc/shadow", "a\nX=1"):
        with pytest.raises(SystemExit):
            render.env_file({**config, "jupyter": {"port": 8889, "token_file": bad}}, "/home/ubuntu", "/home/u/r")
    assert json.loads(render.server_config(config))["MappingKernelManager"]["default_kernel_name"] == "k"
    assert json.loads(render.jupyter_config(config)) == {"KernelSpecManager": {"ensure_native_kernel": False}}


# ---------------------------------------------------------------------------------- if_secret_scan

def test_secret_scan_names_file_and_kind_never_the_secret(tmp_path: Path) -> None:
    key_id = "AKIA" + "IOSFODNN7EXAMPLE"
    (tmp_path / "home/u/.aws").mkdir(parents=True)
    (tmp_path / "home/u/.aws/credentials").write_text(
        f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {'w' * 40}\n")
    (tmp_path / "home/u/.ssh").mkdir()
    (tmp_path / "home/u/.ssh/id_rsa").write_text("-----BEGIN OPENSSH " + "PRIVATE KEY-----\nAAAA\n")
    (tmp_path / "home/u/.jupyter").mkdir()
    (tmp_path / "home/u" / TOKEN_FILE).write_text("t" * 64)
    vendored = tmp_path / "opt/env/lib/python3.11/site-packages/botocore"
    vendored.mkdir(parents=True)
    (vendored / "docs.txt").write_text(key_id)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/ok.conf").write_text("AKIAnotakey and nothing else\n")
    done = run_helper("if_secret_scan", "--token-file", TOKEN_FILE, str(tmp_path / "home"), str(tmp_path / "opt"),
                      str(tmp_path / "etc"))
    assert done.returncode == 1
    lines = sorted(line for line in done.stdout.splitlines() if line.startswith("SECRET "))
    creds = tmp_path / "home/u/.aws/credentials"
    assert lines == sorted([
        f"SECRET {creds}: AWS access key ID",
        f"SECRET {creds}: AWS secret access key",
        f"SECRET {tmp_path}/home/u/{TOKEN_FILE}: JupyterLab token file "
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


def test_imports_what_the_config_names_conda_names_only_when_installed(tmp_path: Path) -> None:
    smoke = helper("if_smoke_imports")
    dist = tmp_path / "seaborn-0.12.dist-info"
    dist.mkdir()
    config = {"smoke": {"required": ["numpy", "scikit-learn"], "if_installed": ["seaborn", "r-base", "gdal"]},
              "install_repo": False}
    assert smoke.wanted(config, str(tmp_path), {"seaborn": str(dist)}) == ["numpy", "scikit-learn", "seaborn",
                                                                          "gdal"]
    assert smoke.wanted({}, str(tmp_path), {}) == []


# ---------------------------------------------------------------------------------- if_idle_check

@pytest.fixture
def idle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """if_idle_check with its files in tmp_path, no ssh or Jupyter activity, and power-off recorded."""
    check = helper("if_idle_check")
    monkeypatch.setattr(check, "AUTOSTOP_FILE", str(tmp_path / "autostop-minutes"))
    monkeypatch.setattr(check, "STAMP", str(tmp_path / "run/last-activity"))
    monkeypatch.setattr(check, "ssh_sessions", lambda: 0)
    monkeypatch.setattr(check, "jupyter_activity", lambda: (0.0, False))
    monkeypatch.delenv("IF_IDLE_MINUTES", raising=False)
    ran: list[list[str]] = []

    def run(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(check.subprocess, "run", run)
    check.ran = ran
    return check


def idle_for(check: ModuleType, minutes: float) -> None:
    os.makedirs(os.path.dirname(check.STAMP), exist_ok=True)
    open(check.STAMP, "a").close()
    then = time.time() - minutes * 60
    os.utime(check.STAMP, (then, then))


@pytest.mark.parametrize(("launched", "baked", "minutes"), [
    (None, None, 0),          # neither: never stop
    (None, "45", 45),         # no launch setting: the baked value
    ("30\n", "45", 30),       # the launch setting wins
    ("0\n", "45", 0),         # 0 at launch turns a baked auto-stop off
    ("15\n", None, 15),       # a launch setting alone (the usual AWS case: baked null, user data 60)
    ("soon\n", "45", 45),     # unreadable launch setting: the baked value, with a warning
    ("-5", None, 0),
])
def test_idle_minutes_prefers_the_launch_setting(idle: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                                 launched: str | None, baked: str | None, minutes: int) -> None:
    if launched is not None:
        Path(idle.AUTOSTOP_FILE).write_text(launched)
    if baked is not None:
        monkeypatch.setenv("IF_IDLE_MINUTES", baked)
    assert idle.idle_minutes() == minutes


def test_idle_check_stops_only_when_idle_past_the_limit(idle: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    Path(idle.AUTOSTOP_FILE).write_text("30\n")
    idle_for(idle, 10)
    assert idle.main() == 0 and idle.ran == []
    idle_for(idle, 31)
    monkeypatch.setattr(idle, "ssh_sessions", lambda: 1)
    assert idle.main() == 0 and idle.ran == [], "an ssh session is activity"
    idle_for(idle, 31)
    monkeypatch.setattr(idle, "ssh_sessions", lambda: 0)
    assert idle.main() == 0
    assert idle.ran == [["systemctl", "poweroff"]], "Stop (poweroff), never Terminate"


def test_idle_check_does_nothing_when_off(idle: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IF_IDLE_MINUTES", "45")
    Path(idle.AUTOSTOP_FILE).write_text("0\n")
    idle_for(idle, 600)
    assert idle.main() == 0 and idle.ran == []
    Path(idle.AUTOSTOP_FILE).unlink()
    monkeypatch.delenv("IF_IDLE_MINUTES")
    assert idle.main() == 0 and idle.ran == []


def test_idle_power_off_falls_back_to_shutdown(idle: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    def run(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        idle.ran.append(argv)
        if argv[0] == "systemctl":
            raise FileNotFoundError(argv[0])
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(idle.subprocess, "run", run)
    assert idle.power_off() == 0
    assert idle.ran == [["systemctl", "poweroff"], ["shutdown", "-h", "now"]]


def test_idle_check_reads_kernels_without_counting_as_activity(monkeypatch: pytest.MonkeyPatch) -> None:
    module = helper("if_idle_check")
    asked = []

    def get(path: str) -> object:
        asked.append(path)
        if path.startswith("/api/status"):
            return {"last_activity": "2030-01-01T00:00:00.000000Z"}
        return [{"execution_state": "busy"}]

    monkeypatch.setattr(module, "jupyter_get", get)
    last, busy = module.jupyter_activity()
    assert busy and last > time.time()
    assert asked == ["/api/status", "/api/kernels?no_track_activity=1"]


# ------------------------------------------------------------------------- if_smoke_server (waits)

@pytest.fixture
def smoke_server(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    smoke = helper("if_smoke_server")
    monkeypatch.setattr(smoke, "PROGRESS_EVERY", 0.2)
    return smoke


def test_smoke_wait_until_reports_progress_and_what_it_waited_for(smoke_server: ModuleType,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match=r"^smoke: FAILED: gave up after 1 s waiting for JupyterLab to answer"):
        smoke_server.wait_until(lambda: False, 1.0, "JupyterLab to answer /api/status")
    assert "smoke: still waiting for JupyterLab to answer /api/status" in capsys.readouterr().out


def test_smoke_refuses_the_server_envs_own_kernel(smoke_server: ModuleType) -> None:
    recipe = {"spec": {"argv": ["/opt/imagefactory/kernel/bin/python", "-m", "ipykernel_launcher"]}}
    native = {"spec": {"argv": [sys.executable, "-m", "ipykernel_launcher"]}}
    bare = {"spec": {"argv": ["python", "-m", "ipykernel_launcher"]}}
    assert smoke_server.own_python_kernels({"tiny": recipe, "python3": native, "other": bare}) == ["other",
                                                                                                    "python3"]
    smoke_server.check_kernelspecs({"tiny": recipe}, "tiny", "/api/kernelspecs")
    with pytest.raises(SystemExit, match=r"offers the server env's own Python as kernel\(s\) \['python3'\]"):
        smoke_server.check_kernelspecs({"tiny": recipe, "python3": native}, "tiny", "/api/kernelspecs")
    with pytest.raises(SystemExit, match="kernel 'tiny' not in"):
        smoke_server.check_kernelspecs({"python3": recipe}, "tiny", "/api/kernelspecs")


def test_smoke_checks_the_news_setting(smoke_server: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    def settings(default: str) -> object:
        return lambda *a, **k: (200, {"schema": {"properties": {"fetchNews": {"default": default}}}})

    monkeypatch.setattr(smoke_server, "call", settings("false"))
    smoke_server.check_settings("http://x", "t")
    assert "Jupyter news off" in capsys.readouterr().out
    monkeypatch.setattr(smoke_server, "call", settings("none"))
    with pytest.raises(SystemExit, match="fetchNews is 'none'"):
        smoke_server.check_settings("http://x", "t")
    monkeypatch.setattr(smoke_server, "call", lambda *a, **k: (404, None))
    smoke_server.check_settings("http://x", "t")
    assert "WARNING" in capsys.readouterr().out


# -------------------------------------------------------- stages run for real, chrooted into the base

@pytest.fixture(scope="module")
def base_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The sandbox's Debian base rootfs, unpacked once, with the login user; stages run in it, chrooted."""
    root = tmp_path_factory.mktemp("stage-root") / "root"
    unpack(ensure_base(rootfs_cache_dir(), progress=lambda _: None), root)
    in_root(root, ["useradd", "-m", "-s", "/bin/bash", "ubuntu"], check=True)
    yield root
    remove_tree(root)


def in_root(root: Path, argv: list[str], check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run argv chrooted into root, as root, with the stages' environment (IF_DIR/IF_CONFIG as Packer sets)."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "IF_DIR": REMOTE_DIR, "IF_CONFIG": f"{REMOTE_DIR}/config.json"}
    return subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True, check=check, env=env)


def run_stage(root: Path, stage: str, **config: object) -> subprocess.CompletedProcess[str]:
    """Run packer/scripts/STAGE.sh as Packer does (as root, IF_DIR/IF_CONFIG set) with this config."""
    staged = root / REMOTE_DIR.lstrip("/")
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(PACKER / "scripts", staged / "scripts")
    shutil.copytree(PACKER / "files", staged / "files")
    recipe = Recipe(name="demo", source=Source("https://example.org/r", "main", "a" * 40))
    values = {"build_id": "b1", "packer_version": "1.6.6", "factory_version": "0", "target": "sandbox",
              "autostop_minutes": None, "kernel_name": "demo",
              "smoke": {"required": [], "if_installed": []}, **config}
    (staged / "config.json").write_text(json.dumps(provision_config(recipe, **values)))  # type: ignore[arg-type]
    return in_root(root, ["bash", f"{REMOTE_DIR}/scripts/{stage}.sh"])


@pytest.mark.parametrize("autostop", [None, 30])
def test_70_jupyter_installs_and_enables_the_service_and_the_idle_timer(base_root: Path,
                                                                       autostop: int | None) -> None:
    done = run_stage(base_root, "70-jupyter", autostop_minutes=autostop)
    assert done.returncode == 0, done.stdout + done.stderr
    systemd = base_root / "etc/systemd/system"
    for wants in ("multi-user.target.wants/imagefactory-jupyter.service",
                  "multi-user.target.wants/imagefactory-firstboot.service",
                  "timers.target.wants/imagefactory-idle.timer"):
        assert (systemd / wants).is_symlink(), f"{wants} is enabled, whatever the auto-stop setting"
    settings = base_root / "opt/imagefactory/server/share/jupyter/lab/settings/overrides.json"
    assert json.loads(settings.read_text())["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    env = (base_root / "etc/imagefactory/jupyter.env").read_text()
    assert f"JUPYTER_TOKEN_FILE=/home/ubuntu/{TOKEN_FILE}\n" in env
    assert ("IF_IDLE_MINUTES=30\n" in env) == (autostop == 30)
    assert (systemd / "imagefactory-jupyter.service.d/10-user.conf").read_text().startswith("[Service]\nUser=ubuntu\n")


CLOUD_INIT_STUB = "#!/bin/sh\necho \"$*\" >> /var/log/cloud-init-calls\n"


def test_90_cleanup_empties_keys_and_ids_and_cleans_cloud_init_state(base_root: Path) -> None:
    home = base_root / "home/ubuntu"
    (home / ".ssh").mkdir(exist_ok=True)
    (home / ".ssh/authorized_keys").write_text("ssh-ed25519 AAAA build-key\n")
    (home / ".bash_history").write_text("secret command\n")
    (base_root / "etc/ssh/ssh_host_ed25519_key").write_text("host key\n")
    (base_root / "etc/machine-id").write_text("0123456789abcdef\n")
    stub = base_root / "usr/local/bin/cloud-init"
    stub.write_text(CLOUD_INIT_STUB)
    stub.chmod(0o755)
    done = run_stage(base_root, "90-cleanup")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (home / ".ssh/authorized_keys").read_text() == ""
    assert not (home / ".bash_history").exists() and not (base_root / "etc/ssh/ssh_host_ed25519_key").exists()
    assert (base_root / "etc/machine-id").read_text() == ""
    assert (base_root / "var/log/cloud-init-calls").read_text() == "clean --logs\n", "state cleaned, not removed"
    assert stub.exists()


def test_90_cleanup_refuses_an_image_whose_instances_could_not_get_their_key(base_root: Path) -> None:
    stub = base_root / "usr/local/bin/cloud-init"
    stub.write_text(CLOUD_INIT_STUB)
    stub.chmod(0o755)
    (base_root / "etc/cloud").mkdir(exist_ok=True)
    (base_root / "etc/cloud/cloud-init.disabled").touch()
    done = run_stage(base_root, "90-cleanup")
    assert done.returncode != 0 and "cloud-init is disabled" in done.stderr
    (base_root / "etc/cloud/cloud-init.disabled").unlink()
    stub.unlink()
    done = run_stage(base_root, "90-cleanup", target="aws")
    assert done.returncode != 0 and "cloud-init is missing" in done.stderr
    assert run_stage(base_root, "90-cleanup").returncode == 0, "the sandbox has none"

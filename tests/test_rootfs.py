"""The sandbox rootfs for real: debootstrap base (cached per machine), BuildRoot's sshd in its container
and cleanup, and the provisioning scripts run over SSH exactly as the Packer template runs them.

Needs root, debootstrap and PyPI. The base rootfs is cached where bakes cache it
(`imagefactory.home.rootfs_cache_dir()`), so debootstrap runs once per machine.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from isolation_probe import ALL_REFUSED, plant

from imagefactory import provision
from imagefactory.home import rootfs_cache_dir
from imagefactory.recipe import RepoTree
from imagefactory.recipe.model import Environment, Jupyter, PostBuild, PythonSpec, Recipe, Source
from imagefactory.sandbox import base, host
from imagefactory.sandbox.archive import pack, unpack
from imagefactory.sandbox.buildroot import BuildRoot
from imagefactory.sandbox.teardown import processes_in, remove_tree
from imagefactory.smoke import smoke_packages

CACHE = rootfs_cache_dir()
USER = "ubuntu"
HOSTILE_URL = "https://example.invalid/a'b\"c$(touch /tmp/if-pwned)`touch /tmp/if-pwned2`\nx.git"

supported, why = host.sandbox_supported()


def require_sandbox() -> None:
    """These tests are the sandbox data plane: a machine that cannot run it fails them (CI runs as root)."""
    assert supported, f"the sandbox rootfs cannot run here: {why}"


# ------------------------------------------------------------------------------------------- pure

def test_pick_mirror_reads_deb822_and_one_line_sources() -> None:
    deb822 = ("Types: deb\n# http://snapshot.debian.org/x\nURIs: http://mirror.example/debian\n"
              "Suites: bookworm bookworm-updates\nComponents: main\n\n"
              "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n")
    assert base.pick_mirror([deb822]) == "http://mirror.example/debian"
    one_line = "deb [arch=amd64] https://m.example/debian bookworm main\n"
    assert base.pick_mirror(["deb https://x.example/ubuntu jammy main\n", one_line]) == "https://m.example/debian"
    assert base.pick_mirror(["deb http://m.example/debian trixie main\n"]) == base.DEFAULT_MIRROR


def test_split_pem_finds_each_certificate() -> None:
    cert = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----"
    assert host.split_pem(f"junk\n{cert}\n\n{cert}  \n") == [cert + "\n", cert + "\n"]


def test_pack_and_unpack_round_trip(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/a").write_text("hello\n")
    (tree / "etc/link").symlink_to("a")
    os.chmod(tree / "etc/a", 0o640)
    info = pack(tree, tmp_path / "out/img.tar.zst")
    assert info.path.is_file() and info.packed_bytes > 0 and info.unpacked_bytes == 6 + 1
    unpack(info.path, tmp_path / "back")
    assert (tmp_path / "back/etc/a").read_text() == "hello\n"
    assert os.readlink(tmp_path / "back/etc/link") == "a"
    assert (tmp_path / "back/etc/a").stat().st_mode & 0o777 == 0o640


# ------------------------------------------------------------------------------------ ssh helpers

@dataclass
class Ssh:
    """ssh/scp to the build root over one multiplexed connection, as Packer keeps one session open."""

    port: int
    key: Path
    control: Path

    def options(self) -> list[str]:
        return ["-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ControlMaster=auto",
                "-o", f"ControlPath={self.control}", "-o", "ControlPersist=600"]

    def run(self, command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        argv = ["ssh", *self.options(), "-p", str(self.port), f"{USER}@127.0.0.1", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def upload(self, local: Path, remote: str) -> None:
        argv = ["scp", *self.options(), "-q", "-r", "-P", str(self.port), str(local), f"{USER}@127.0.0.1:{remote}"]
        subprocess.run(argv, check=True, timeout=120)

    def download(self, remote: str, local: Path) -> None:
        argv = ["scp", *self.options(), "-q", "-P", str(self.port), f"{USER}@127.0.0.1:{remote}", str(local)]
        subprocess.run(argv, check=True, timeout=120)

    def close(self) -> None:
        argv = ["ssh", *self.options(), "-p", str(self.port), "-O", "exit", f"{USER}@127.0.0.1"]
        subprocess.run(argv, capture_output=True, check=False, timeout=30)

    def stage(self, script: Path, n: int) -> subprocess.CompletedProcess[str]:
        """Upload one stage to a throwaway path and run it with the template's execute_command."""
        remote = f"/tmp/script_{n}.sh"
        self.upload(script, remote)
        command = provision.EXECUTE_COMMAND.replace("{{ .Path }}", remote)
        return self.run(f"{command} 2>&1; rc=$?; rm -f {remote}; exit $rc")


def keypair(tmp: Path) -> tuple[Path, str]:
    key = tmp / "build_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "imagefactory-build", "-f", str(key)],
                   check=True)
    return key, (tmp / "build_key.pub").read_text()


def assert_quiet(root: Path) -> None:
    assert processes_in(root) == []
    with open("/proc/mounts", encoding="utf-8") as fh:
        assert str(root) not in fh.read()


# ------------------------------------------------------------------------------- BuildRoot itself

def test_buildroot_serves_ssh_in_a_container_and_cleans_up(tmp_path: Path) -> None:
    require_sandbox()
    key, pub = keypair(tmp_path)
    ssh = Ssh(0, key, tmp_path / "ctl")
    probe = tmp_path / "probe"
    probe.mkdir()
    witness = plant(probe, tmp_path)
    try:
        with BuildRoot(CACHE, tmp_path / "work", login_user=USER, authorized_key=pub) as root:
            ssh.port = root.port
            done = ssh.run("true && sudo -n id -u && test -s /etc/ssl/certs/ca-certificates.crt")
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == "0"
            assert processes_in(root.root), "sshd runs inside the rootfs"
            assert root.run(["test", "-d", "/proc/self"]).returncode == 0
            ssh.upload(probe, "/tmp/probe")
            over_ssh = ssh.run("cd /tmp/probe && bash postBuild")  # as Packer's postBuild stage runs it
            assert over_ssh.returncode == 0 and ALL_REFUSED in over_ssh.stdout, over_ssh.stdout + over_ssh.stderr
            as_root = root.run(["bash", "-c", "cd /tmp/probe && bash postBuild"])  # the host's way in
            assert as_root.returncode == 0 and ALL_REFUSED in as_root.stdout, as_root.stdout + as_root.stderr
            caps = root.run(["grep", "CapBnd", "/proc/self/status"]).stdout.split()[1]
            assert int(caps, 16) & (1 << 21) == 0, "CAP_SYS_ADMIN is not in the bounding set"
            devices = root.run(["ls", "/dev"]).stdout.split()
            assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm"} <= set(devices)
            assert not [d for d in devices if d.startswith(("sd", "vd", "nvme", "loop", "xvd"))], devices
            ssh.close()
        witness.assert_host_unchanged()
    finally:
        witness.close()
    assert_quiet(root.root)
    assert (root.root / "etc/os-release").is_file(), "the tree stays for packing"
    remove_tree(root.root)
    with pytest.raises(KeyboardInterrupt), BuildRoot(CACHE, tmp_path / "w2", login_user=USER,
                                                            authorized_key=pub) as root2:
        raise KeyboardInterrupt
    assert_quiet(root2.root)
    assert not root2.root.exists(), "a failed build's tree is removed"


def test_buildroot_cleans_up_on_sigterm(tmp_path: Path) -> None:
    require_sandbox()
    _, pub = keypair(tmp_path)
    program = ("import sys, time; from pathlib import Path; from imagefactory.sandbox.buildroot import BuildRoot\n"
               f"with BuildRoot(Path({str(CACHE)!r}), Path({str(tmp_path / 'w')!r}), "
               f"login_user='ubuntu', authorized_key={pub!r}):\n"
               "    print('up', flush=True); time.sleep(120)\n")
    child = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[1])
    assert child.stdout is not None and child.stdout.readline().strip() == "up"
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=60) == 128 + signal.SIGTERM
    assert_quiet(tmp_path / "w/rootfs")
    assert not (tmp_path / "w/rootfs").exists(), "an interrupted build's tree is removed"


# ------------------------------------------------------------------------- provisioning over SSH

def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@e")
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def example_repo(path: Path, files: dict[str, str]) -> str:
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "example")
    return git(path, "rev-parse", "HEAD")


def example_recipe(repo: str, commit: str, *, pip: tuple[str, ...] = ("requirements.txt",),
                   post_build: tuple[PostBuild, ...] = (), port: int = 8889) -> Recipe:
    env = Environment(python=PythonSpec(version="3.11", source="override", reason="sandbox rehearsal"),
                      pip=pip, post_build=post_build)
    return Recipe(name="tiny", source=Source(repo=repo, ref="main", commit=commit), environment=env,
                  jupyter=Jupyter(port=port))


def stage_dir(tmp: Path, name: str, recipe: Recipe, checkout: Path, autostop: int | None = 45) -> Path:
    config = provision.provision_config(recipe, build_id=f"b-{name}", packer_version="1.6.6",
                                        factory_version="0.1.0", target="sandbox",
                                        autostop_minutes=autostop, kernel_name="tiny",
                                        smoke=smoke_packages(recipe, RepoTree.scan(checkout)))
    return provision.stage_provision_dir(tmp / name, recipe, config, checkout, None)


@dataclass
class Provisioned:
    port: int
    outputs: dict[str, str]
    manifest: dict
    files: dict[str, str]
    failures: dict[str, str]
    seconds: float


def run_stages(ssh: Ssh, stages: list[Path], outputs: dict[str, str]) -> None:
    for n, script in enumerate(stages):
        done = ssh.stage(script, n)
        outputs[script.stem] = done.stdout
        assert done.returncode == 0, f"{script.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-1000:]}"


def reupload(ssh: Ssh, provision_dir: Path) -> None:
    assert ssh.run("sudo rm -rf /tmp/imagefactory").returncode == 0
    ssh.upload(provision_dir, provision.REMOTE_DIR)


def failure_cases(ssh: Ssh, tmp: Path) -> dict[str, str]:
    """Over the still-open session (the build key is gone): a missing package and a planted key."""
    failures = {}
    bad_repo = tmp / "bad-repo"
    commit = example_repo(bad_repo, {"requirements.txt": "six\nno-such-package-imagefactory-test==1.0\n"})
    reupload(ssh, stage_dir(tmp, "bad", example_recipe(str(bad_repo), commit), bad_repo))
    done = ssh.stage(provision.PACKER_DIR / "scripts/40-kernel-env.sh", 40)
    failures["missing-package"] = f"rc={done.returncode}\n{done.stdout}"
    leaky_repo = tmp / "leaky-repo"
    commit = example_repo(leaky_repo, {"requirements.txt": "six\n",
                                       "notes/creds.ini": "[default]\naws_access_key_id = AKIA" + "IOSFODNN7EXAMPLE\n"})
    reupload(ssh, stage_dir(tmp, "leaky", example_recipe(str(leaky_repo), commit), leaky_repo))
    for n, name in ((50, "50-repo.sh"), (95, "95-secret-scan.sh")):
        done = ssh.stage(provision.PACKER_DIR / "scripts" / name, n)
        failures[name] = f"rc={done.returncode}\n{done.stdout}"
    return failures


def service_start(root: BuildRoot, files: dict[str, str]) -> str:
    """Start JupyterLab as systemd would at boot: the unit's ExecStartPre and ExecStart, its User= and
    EnvironmentFile; check it answers with the token the token maker wrote; stop it; drop the token."""
    env = dict(line.split("=", 1) for line in files["env"].splitlines())
    unit = dict(re.findall(r"^(ExecStartPre|ExecStart)=(.*)$", files["unit"], re.MULTILINE))
    expand = [re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], w) for w in unit["ExecStart"].split()]
    as_user = ["runuser", "-u", USER, "--", "env", f"HOME=/home/{USER}", *(f"{k}={v}" for k, v in env.items())]
    made = root.run([*as_user, unit["ExecStartPre"]])
    assert made.returncode == 0, made.stderr
    token_file = root.root / env["JUPYTER_TOKEN_FILE"].lstrip("/")
    token = token_file.read_text()
    assert len(token) == 64 and token_file.stat().st_mode & 0o777 == 0o600
    server = subprocess.Popen(root.command([*as_user, *expand]), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{env['IF_JUPYTER_PORT']}/api/status"
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return f"status {response.status}"
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        return "no answer"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        token_file.unlink()


IDLE_MINUTES = """
import os, sys, tempfile
sys.path.insert(0, "/opt/imagefactory/bin")
import if_idle_check as check
with open("/etc/imagefactory/jupyter.env") as fh:
    os.environ.update(line.strip().split("=", 1) for line in fh if "=" in line)
check.AUTOSTOP_FILE = os.path.join(tempfile.mkdtemp(), "autostop-minutes")
seen = [check.idle_minutes()]
for launched in ("0", "20"):
    with open(check.AUTOSTOP_FILE, "w") as fh:
        fh.write(launched + "\\n")
    seen.append(check.idle_minutes())
print(seen)
"""


def idle_minutes(root: BuildRoot) -> str:
    """The installed idle check's limit, on the image's python3: baked only, launch 0, launch 20. It
    only reads settings (in a temporary folder): nothing here can power anything off."""
    done = root.run(["python3", "-c", IDLE_MINUTES], timeout=60)
    return done.stdout.strip() or done.stderr[-500:]


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provisioned]:
    require_sandbox()
    tmp = tmp_path_factory.mktemp("provision")
    repo = tmp / "repo"
    commit = example_repo(repo, {
        "requirements.txt": "requests\nsix\n",
        "postBuild": "echo \"post-build ran as $(whoami) in $(pwd)\" > post-build.out\n",
        "tiny/__init__.py": "VALUE = 1\n",
    })
    (tmp / "pwned-check").mkdir()
    port = host.free_port()
    recipe = example_recipe(HOSTILE_URL, commit, post_build=(PostBuild("postBuild", run=True),), port=port)
    provision_dir = stage_dir(tmp, "build", recipe, repo)
    before, after = provision.stage_scripts()
    key, pub = keypair(tmp)
    with BuildRoot(CACHE, tmp / "work", login_user=USER, authorized_key=pub) as root:
        ssh = Ssh(root.port, key, tmp / "ctl")
        started = time.monotonic()
        outputs: dict[str, str] = {}
        ssh.upload(provision_dir, provision.REMOTE_DIR)
        run_stages(ssh, before, outputs)
        ssh.download(provision.MANIFEST_PATH, tmp / "manifest.json")
        run_stages(ssh, after, outputs)
        seconds = time.monotonic() - started
        print(f"provisioning the tiny example took {seconds:.1f} s")
        r = root.root
        home = r / "home" / USER
        files = {
            "unit": (r / "etc/systemd/system/imagefactory-jupyter.service").read_text(),
            "dropin": (r / "etc/systemd/system/imagefactory-jupyter.service.d/10-user.conf").read_text(),
            "env": (r / "etc/imagefactory/jupyter.env").read_text(),
            "authorized_keys": (home / ".ssh/authorized_keys").read_text(),
            "post_build": (home / "tiny/post-build.out").read_text(),
            "origin": git(home / "tiny", "-c", "safe.directory=*", "config", "remote.origin.url"),
            "head": git(home / "tiny", "-c", "safe.directory=*", "rev-parse", "HEAD"),
            "branch": git(home / "tiny", "-c", "safe.directory=*", "branch", "--show-current"),
            "kernelspec": (r / "opt/imagefactory/server/share/jupyter/kernels/tiny/kernel.json").read_text(),
            "lab_overrides": (r / "opt/imagefactory/server/share/jupyter/lab/settings/overrides.json").read_text(),
            "idle_minutes": idle_minutes(root),
            "wants": " ".join(sorted(p.name for p in (r / "etc/systemd/system").glob("*.wants/imagefactory-*"))),
            "host_keys": " ".join(p.name for p in (r / "etc/ssh").glob("ssh_host_*")),
            "machine_id": (r / "etc/machine-id").read_text(),
            "tmp": " ".join(p.name for p in (r / "tmp").iterdir()),
            "token": str((home / ".jupyter/imagefactory-token").exists()),
            "root_owned_in_home": " ".join(str(p) for p in home.rglob("*") if p.lstat().st_uid == 0),
            "pwned": str(any(Path(p).exists() for p in ("/tmp/if-pwned", "/tmp/if-pwned2",
                                                         r / "tmp/if-pwned", r / "tmp/if-pwned2"))),
        }
        files["service"] = service_start(root, files)
        failures = failure_cases(ssh, tmp)
        ssh.close()
    assert_quiet(root.root)
    remove_tree(root.root)
    yield Provisioned(port, outputs, json.loads((tmp / "manifest.json").read_text()), files, failures, seconds)


@pytest.mark.network
def test_manifest_records_the_build(provisioned: Provisioned) -> None:
    m = provisioned.manifest
    assert m["repo"]["url"] == HOSTILE_URL
    assert m["repo"]["commit"] == m["repo"]["head"] == provisioned.files["head"]
    assert m["build_id"] == "b-build" and m["target"] == "sandbox"
    assert m["recipe"]["digest"].startswith("sha256:")
    assert m["python"]["version"].startswith("3.11.")
    assert m["versions"]["packer"] == "1.6.6" and m["versions"]["factory"] == "0.1.0"
    names = {p["name"].lower() for p in m["packages"]}
    assert {"requests", "six", "ipykernel"} <= names
    assert m["jupyterlab"].split(".")[0] >= "4"
    assert m["autostop_minutes"] == 45 and m["created"].endswith("Z")


@pytest.mark.network
def test_repo_is_cloned_with_origin_kept_and_hostile_values_inert(provisioned: Provisioned) -> None:
    f = provisioned.files
    assert f["origin"] == HOSTILE_URL
    assert f["branch"] == "main"
    assert f["pwned"] == "False"
    assert f["root_owned_in_home"] == ""
    assert "post-build ran as ubuntu in /home/ubuntu/tiny" in f["post_build"]


@pytest.mark.network
def test_kernel_is_registered_and_smoke_test_ran(provisioned: Provisioned) -> None:
    assert "/opt/imagefactory/kernel/bin/python" in provisioned.files["kernelspec"]
    smoke = provisioned.outputs["80-smoke"]
    assert "smoke: import requests (from requests) ok" in smoke
    assert "smoke: import six (from six) ok" in smoke
    assert "tiny " in smoke and "/opt/imagefactory/server/share/jupyter/kernels/tiny" in smoke
    assert "python3 " not in smoke, "the server env offers only the recipe's kernel"
    assert "smoke: kernelspecs ['tiny'] (default 'tiny')" in smoke
    assert "smoke: JupyterLab settings: Jupyter news off (fetchNews 'false')" in smoke
    assert '"fetchNews": "false"' in provisioned.files["lab_overrides"]
    assert "JupyterLab answers /api/status" in smoke and "refuses a request without the token" in smoke
    assert "smoke: kernel runs code (sys.prefix /opt/imagefactory/kernel)" in smoke
    assert "smoke test passed" in smoke


@pytest.mark.network
def test_jupyter_service_and_autostop_are_installed(provisioned: Provisioned) -> None:
    f = provisioned.files
    assert "--ip=127.0.0.1" in f["unit"] and "ExecStartPre=/opt/imagefactory/bin/imagefactory-token" in f["unit"]
    assert "User=ubuntu" in f["dropin"]
    assert "IF_IDLE_MINUTES=45" in f["env"]
    assert "JUPYTER_TOKEN_FILE=/home/ubuntu/.jupyter/imagefactory-token" in f["env"]
    assert f["wants"] == ("imagefactory-firstboot.service imagefactory-idle.timer "
                          "imagefactory-jupyter.service")
    assert f["idle_minutes"] == "[45, 0, 20]", "the launch setting wins over the baked 45; 0 turns it off"
    assert f["token"] == "False", "the token is made at first boot, never baked"
    assert f["service"] == "status 200", "the unit's own command line serves with the per-instance token"
    assert f"IF_JUPYTER_PORT={provisioned.port}" in f["env"]


@pytest.mark.network
def test_cleanup_removed_build_key_host_keys_and_build_files(provisioned: Provisioned) -> None:
    f = provisioned.files
    assert f["authorized_keys"] == ""
    assert f["host_keys"] == ""
    assert f["machine_id"] == ""
    assert "imagefactory" not in f["tmp"]
    assert "0 finding(s)" in provisioned.outputs["95-secret-scan"]


@pytest.mark.network
def test_missing_package_fails_with_the_installer_error(provisioned: Provisioned) -> None:
    out = provisioned.failures["missing-package"]
    assert not out.startswith("rc=0")
    assert "no-such-package-imagefactory-test" in out
    assert "the kernel env's packages could not be installed" in out


@pytest.mark.network
def test_planted_aws_key_stops_the_bake_naming_the_file(provisioned: Provisioned) -> None:
    assert provisioned.failures["50-repo.sh"].startswith("rc=0")
    out = provisioned.failures["95-secret-scan.sh"]
    assert not out.startswith("rc=0")
    assert "SECRET /home/ubuntu/tiny/notes/creds.ini: AWS access key ID" in out
    assert "IOSFODNN7EXAMPLE" not in out, "the secret itself is never printed"

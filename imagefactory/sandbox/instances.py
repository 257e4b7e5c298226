"""Local instances: a sandbox AMI started on this machine, reached exactly like an EC2 instance.

A sandbox bake packs the provisioned root filesystem as `<home>/.sandbox/images/<build_id>.tar.zst`
(AMI -> its `imagefactory:build-id` tag -> that file). Launching it here:

    create  unpack into `<home>/.sandbox/instances/<id>/`, install the launch key for the login user,
            write /etc/imagefactory/autostop-minutes, make fresh ssh host keys (the first-boot unit)
    boot    sshd (chroot, private mount namespace, 127.0.0.1, a free port), then what the systemd units
            would do, read from the units themselves: imagefactory-jupyter's ExecStartPre (the token)
            and ExecStart (JupyterLab from the server env, as the unit's User, on a free loopback port)
    halt    end every process inside (stop: the disk is kept); remove: the disk too (terminate)

`<home>/.sandbox/instances/<id>.json` records the ports and pids. Needs Linux and root.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from imagefactory import proc
from imagefactory.dataplane import image_path
from imagefactory.errors import SandboxError
from imagefactory.home import Home
from imagefactory.sandbox import rootfs

Progress = Callable[[str], None]
UNITS = "etc/systemd/system"
JUPYTER_UNIT = "imagefactory-jupyter.service"
FIRSTBOOT_UNIT = "imagefactory-firstboot.service"
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
START_TIMEOUT = 120.0
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class LocalSpec:
    instance_id: str
    build_id: str
    user: str
    public_key: str
    autostop: int


@dataclass(frozen=True)
class LocalInstance:
    instance_id: str
    build_id: str
    root: str
    user: str
    ssh_port: int = 0
    jupyter_port: int = 0
    sshd_pid: int = 0
    jupyter_pid: int = 0
    host_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unit:
    """The parts of a systemd service that matter here."""

    exec_start_pre: tuple[tuple[str, ...], ...]
    exec_start: tuple[str, ...]
    user: str | None
    workdir: str | None
    env_files: tuple[str, ...]


def _dir(home: Home) -> Path:
    return home.sandbox_dir / "instances"


def check_ready(home: Home, build_id: str) -> Path:
    ok, why = rootfs.sandbox_supported()
    if not ok:
        raise SandboxError(f"cannot run a sandbox instance here: {why}", "run as root on Linux, or use AWS")
    path = image_path(home, build_id)
    if not path.is_file():
        raise SandboxError(f"build {build_id} has no packed root filesystem ({path})",
                           "bake the image again in the sandbox; only provisioned sandbox builds can launch")
    return path


def load(home: Home, instance_id: str) -> LocalInstance | None:
    try:
        data = json.loads((_dir(home) / f"{instance_id}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return LocalInstance(**{**data, "host_keys": tuple(data.get("host_keys", ()))})


def _save(home: Home, inst: LocalInstance) -> None:
    path = _dir(home) / f"{inst.instance_id}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(inst), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def is_up(inst: LocalInstance) -> bool:
    return bool(inst.sshd_pid) and inst.sshd_pid in rootfs.processes_in(Path(inst.root))


def create(home: Home, spec: LocalSpec, progress: Progress) -> LocalInstance:
    """Unpack the build's image for a new instance, personalise it and boot it."""
    root = _dir(home) / spec.instance_id
    progress(f"sandbox: unpacking {image_path(home, spec.build_id).name} into {root}")
    try:
        rootfs.unpack(check_ready(home, spec.build_id), root)
    except SandboxError as exc:
        detail = " ".join(exc.message.split())[-300:]
        raise SandboxError(f"unpacking the image of build {spec.build_id} failed: {detail}",
                           "the packed image is damaged; bake the image again") from None
    _authorize(root, spec.user, spec.public_key)
    state = root / "etc/imagefactory"
    state.mkdir(parents=True, exist_ok=True)
    (state / "autostop-minutes").write_text(f"{spec.autostop}\n", encoding="utf-8")
    for old in (root / "etc/ssh").glob("ssh_host_*"):
        old.unlink()
    firstboot = read_unit(root, FIRSTBOOT_UNIT)
    proc.run(["chroot", str(root), *(firstboot.exec_start if firstboot else ("ssh-keygen", "-A"))], timeout=120)
    keys = tuple(sorted(" ".join(p.read_text().split()[:2]) for p in (root / "etc/ssh").glob("ssh_host_*_key.pub")))
    _save(home, LocalInstance(spec.instance_id, spec.build_id, str(root), spec.user, host_keys=keys))
    return boot(home, spec.instance_id, progress)


def _authorize(root: Path, user: str, public_key: str) -> None:
    """The launch key as the login user's only authorized key (what EC2 does with KeyName)."""
    if not rootfs.USER_RE.fullmatch(user):
        raise SandboxError(f"login user {user!r} is not a valid user name", "fix image.login_user in the recipe")
    proc.run(["chroot", str(root), "install", "-d", "-m", "0700", "-o", user, "-g", user, f"/home/{user}/.ssh"])
    keys = root / "home" / user / ".ssh" / "authorized_keys"
    keys.write_text(public_key.strip() + "\n", encoding="utf-8")
    keys.chmod(0o600)
    proc.run(["chroot", str(root), "chown", f"{user}:{user}", f"/home/{user}/.ssh/authorized_keys"])


def read_unit(root: Path, name: str) -> Unit | None:
    """Parse a unit and its drop-ins (the keys used here; later drop-ins win, as in systemd)."""
    unit = root / UNITS / name
    if not unit.is_file():
        return None
    files = [unit, *sorted((root / UNITS / f"{name}.d").glob("*.conf"))]
    pre: list[tuple[str, ...]] = []
    values: dict[str, str] = {}
    env_files: list[str] = []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.strip().partition("=")
            if not sep or line.lstrip().startswith(("#", ";")):
                continue
            if key == "ExecStartPre":
                pre.append(tuple(shlex.split(value.lstrip("-@+!"))))
            elif key == "EnvironmentFile":
                env_files.append(value.lstrip("-"))
            else:
                values[key] = value
    start = tuple(shlex.split(values.get("ExecStart", "").lstrip("-@+!")))
    return Unit(tuple(pre), start, values.get("User"), values.get("WorkingDirectory"), tuple(env_files))


def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            env[key] = value.strip().strip('"')
    return env


def expand(argv: tuple[str, ...], env: dict[str, str]) -> list[str]:
    """systemd's ${VAR} / $VAR substitution in an Exec line."""
    return [_VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), arg) for arg in argv]


def boot(home: Home, instance_id: str, progress: Progress) -> LocalInstance:
    """Start sshd and JupyterLab for an unpacked instance (anything left running inside is ended first)."""
    inst = load(home, instance_id)
    if inst is None:
        raise SandboxError(f"sandbox instance {instance_id} has no disk here", "launch a new one")
    root = Path(inst.root)
    halt(home, instance_id)
    inst = replace(inst, ssh_port=rootfs.free_port())
    sshd = _start_sshd(root, inst, _dir(home) / f"{instance_id}.sshd.log")
    inst = replace(inst, sshd_pid=sshd)
    _save(home, inst)
    try:
        inst = _start_jupyter(home, root, inst)
    except BaseException:
        halt(home, instance_id)
        raise
    _save(home, inst)
    progress(f"sandbox: {instance_id} up: sshd on 127.0.0.1:{inst.ssh_port}, "
             f"JupyterLab on 127.0.0.1:{inst.jupyter_port} (pids {inst.sshd_pid}, {inst.jupyter_pid})")
    return inst


def _start_sshd(root: Path, inst: LocalInstance, log_path: Path) -> int:
    sshd = ["/usr/sbin/sshd", "-D", "-e", "-p", str(inst.ssh_port), "-o", "ListenAddress=127.0.0.1",
            "-o", "PidFile=none", "-o", "UsePAM=no", "-o", "PasswordAuthentication=no",
            "-o", "KbdInteractiveAuthentication=no", "-o", "PermitRootLogin=no", "-o", "UseDNS=no",
            "-o", f"AllowUsers={inst.user}"]
    argv = ["unshare", "--mount", "--propagation", "private", "--", sys.executable, "-m",
            "imagefactory.sandbox.rootfs", str(root), "--", *sshd]
    env = dict(rootfs.CLEAN_ENV, PYTHONPATH=str(Path(rootfs.__file__).resolve().parents[2]))
    pid = _spawn(argv, env, log_path)
    _wait(lambda: _banner(inst.ssh_port), pid, f"sshd of {inst.instance_id}", log_path)
    return pid


def _start_jupyter(home: Home, root: Path, inst: LocalInstance) -> LocalInstance:
    unit = read_unit(root, JUPYTER_UNIT)
    if unit is None or not unit.exec_start:
        raise SandboxError(f"the image has no {JUPYTER_UNIT}", "bake it with the current packer/ scripts")
    user = unit.user or inst.user
    env = {"PATH": SYSTEMD_PATH, "HOME": f"/home/{user}", "USER": user, "LOGNAME": user, "SHELL": "/bin/bash",
           "LANG": "C.UTF-8"}
    for name in unit.env_files:
        env.update(read_env_file(root / name.lstrip("/")))
    port = rootfs.free_port()
    env["IF_JUPYTER_PORT"] = str(port)
    log_path = _dir(home) / f"{inst.instance_id}.jupyter.log"
    for pre in unit.exec_start_pre:
        done = subprocess.run(_enter(inst, user, unit.workdir, root, expand(pre, env)), env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise SandboxError(f"{pre[0]} failed in {inst.instance_id}: {done.stderr.strip()[-300:]}")
    pid = _spawn(_enter(inst, user, unit.workdir, root, expand(unit.exec_start, env)), env, log_path)
    _wait(lambda: _listens(port), pid, f"JupyterLab of {inst.instance_id}", log_path)
    return replace(inst, jupyter_port=port, jupyter_pid=pid)


def _enter(inst: LocalInstance, user: str, workdir: str | None, root: Path, argv: list[str]) -> list[str]:
    """argv run inside the instance: sshd's mount namespace and root, as `user`, in `workdir`."""
    wd = str(root / (workdir or f"/home/{user}").lstrip("/"))  # opened before entering: the host's path
    return ["nsenter", f"--target={inst.sshd_pid}", "--mount", "--root", f"--wd={wd}", "--",
            "setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *argv]


def _spawn(argv: list[str], env: dict[str, str], log_path: Path) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)  # outlives this command, like an instance
    return process.pid


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child and has exited
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(ready: Callable[[], bool], pid: int, what: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if not _alive(pid):
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise SandboxError(f"{what} exited while starting: {' | '.join(tail)}", f"see {log_path}")
        if time.monotonic() > deadline:
            raise SandboxError(f"{what} did not answer within {START_TIMEOUT:.0f} s", f"see {log_path}")
        time.sleep(0.2)


def _banner(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
        conn.settimeout(2)
        return conn.recv(4).startswith(b"SSH-")
    return False


def _listens(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def halt(home: Home, instance_id: str) -> None:
    """End every process inside the instance (Stop); its disk stays."""
    inst = load(home, instance_id)
    if inst is None:
        return
    root = Path(inst.root)
    if root.exists():
        rootfs.kill_processes(root)
        rootfs.unmount_all(root)
    for pid in (inst.sshd_pid, inst.jupyter_pid):
        if pid:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
    _save(home, replace(inst, sshd_pid=0, jupyter_pid=0))


def remove(home: Home, instance_id: str) -> None:
    """Terminate: processes ended, the disk and the record removed."""
    inst = load(home, instance_id)
    root = Path(inst.root) if inst else _dir(home) / instance_id
    rootfs.remove_tree(root)
    for suffix in (".json", ".sshd.log", ".jupyter.log"):
        (_dir(home) / f"{instance_id}{suffix}").unlink(missing_ok=True)


def running(home: Home) -> list[str]:
    """Ids of local instances whose processes are up."""
    found = []
    for record in sorted(_dir(home).glob("i-*.json")):
        inst = load(home, record.stem)
        if inst is not None and is_up(inst):
            found.append(inst.instance_id)
    return found


def stop_all_for_down(home: Home, *, force: bool, progress: Progress) -> None:
    """Before the emulator stops: it does not keep instances across a restart, so running local instances
    would be left without their records. Refuse, or with `force` stop their processes (disks kept)."""
    ids = running(home)
    if ids and not force:
        raise SandboxError(f"{len(ids)} sandbox instance(s) still running: {', '.join(ids)}",
                           "terminate them (invoke terminate ID --yes), or pass --force to stop their processes")
    for instance_id in ids:
        halt(home, instance_id)
        progress(f"sandbox: stopped the processes of {instance_id} (disk kept under {_dir(home)})")

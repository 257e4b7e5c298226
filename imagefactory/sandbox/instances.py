"""Local instances: a sandbox AMI started on this machine, reached exactly like an EC2 instance.

A sandbox bake packs the provisioned root filesystem as the build's image under `<home>/.sandbox/images/`
(AMI -> its `imagefactory:build-id` tag -> that image; an incremental build's is a layer over its parent's,
`sandbox.images`). Launching it here:

    create  unpack the image (its layers, in order) into `<home>/.sandbox/instances/<id>/`; in a
            one-shot container (the image is untrusted: a repository's code ran in it) install the
            launch key for the login user, write /etc/imagefactory/autostop-minutes and make fresh ssh
            host keys (the first-boot unit)
    boot    a container (`sandbox.container`) whose main process is sshd (127.0.0.1, a free port),
            then what the systemd units would do, read from the units themselves: imagefactory-jupyter's
            ExecStartPre (the token) and ExecStart (JupyterLab from the server env, as the unit's User,
            on a free loopback port), both run inside that container
    halt    end every process of the container (stop: the disk is kept); remove: the disk too (terminate)

`<home>/.sandbox/instances/<id>.json` records the ports and pids. Needs Linux and root.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TypeVar

from imagefactory.cloud.target import Target
from imagefactory.errors import SandboxError
from imagefactory.files import atomic_write
from imagefactory.home import Home
from imagefactory.sandbox import container, images
from imagefactory.sandbox.archive import image_path
from imagefactory.sandbox.buildroot import sshd_answers, sshd_argv
from imagefactory.sandbox.contents import build_of
from imagefactory.sandbox.host import Progress, check_user, free_port, sandbox_supported
from imagefactory.sandbox.images import Image
from imagefactory.sandbox.teardown import kill_processes, processes_in, remove_tree, unmount_all
from imagefactory.sandbox.units import expand, read_env_file, read_unit
from imagefactory.waiting import WaitTimeout, wait_for

JUPYTER_UNIT = "imagefactory-jupyter.service"
FIRSTBOOT_UNIT = "imagefactory-firstboot.service"
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
START_TIMEOUT = 120.0
KEYS_MARK = "--imagefactory-host-keys--"
T = TypeVar("T")
# First boot, run inside a one-shot container: the launch key, the auto-stop setting, new host keys.
FIRSTBOOT = f"""set -eu
install -d -m 0700 -o "$IF_USER" -g "$IF_USER" "/home/$IF_USER/.ssh"
keys="/home/$IF_USER/.ssh/authorized_keys"
rm -f "$keys"
printf '%s\\n' "$IF_KEY" > "$keys"
chmod 0600 "$keys"
chown "$IF_USER:$IF_USER" "$keys"
install -d -m 0755 /etc/imagefactory
printf '%s\\n' "$IF_AUTOSTOP" > /etc/imagefactory/autostop-minutes
rm -f /etc/ssh/ssh_host_*
"$@"
echo {KEYS_MARK}
cat /etc/ssh/ssh_host_*_key.pub
"""


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
    sshd_pid: int = 0  # the systemd-nspawn running the instance's container (sshd is its main process)
    jupyter_pid: int = 0
    host_keys: tuple[str, ...] = ()


def instances_dir(home: Home) -> Path:
    return home.sandbox_dir / "instances"


def data_home(target: Target) -> Home:
    """Where the target's sandbox keeps its packed images and local instances, whoever the caller is."""
    if target.sandbox_home is None:
        raise SandboxError(f"the sandbox emulator at {target.endpoint} keeps its state outside a factory home, so it "
                           "runs no local instances", "start it from a home: invoke sandbox.up")
    return target.sandbox_home


def content_of(target: Target, region: str, ami: str) -> str:
    """The build whose packed rootfs `ami` holds (its own, or the one it was copied from), as the emulator
    says for the caller's account; checked to be launchable here. Owner and student alike."""
    assert target.endpoint is not None
    build_id = build_of(target.endpoint, region, ami, target.account)
    check_ready(data_home(target), build_id)
    return build_id


def check_ready(home: Home, build_id: str) -> Image:
    """The build's image, if this machine can run it (`images.Missing` names a packed archive not there)."""
    ok, why = sandbox_supported()
    if not ok:
        raise SandboxError(f"cannot run a sandbox instance here: {why}", "run as root on Linux, or use AWS")
    return images.load(image_path(home, build_id).parent, build_id)


def load(home: Home, instance_id: str) -> LocalInstance | None:
    try:
        data = json.loads((instances_dir(home) / f"{instance_id}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return LocalInstance(**{**data, "host_keys": tuple(data.get("host_keys", ()))})


def _save(home: Home, inst: LocalInstance) -> None:
    atomic_write(instances_dir(home) / f"{inst.instance_id}.json", json.dumps(asdict(inst), indent=1) + "\n")


def is_up(inst: LocalInstance) -> bool:
    return bool(inst.sshd_pid) and inst.sshd_pid in processes_in(Path(inst.root))


def create(home: Home, spec: LocalSpec, progress: Progress) -> LocalInstance:
    """Unpack the build's image for a new instance, personalise it and boot it."""
    check_user(spec.user)
    root = instances_dir(home) / spec.instance_id
    image = check_ready(home, spec.build_id)
    progress(f"sandbox: unpacking the image of build {spec.build_id} ({len(image.layers)} layer(s)) into {root}")
    try:
        images.unpack(image, root)
    except SandboxError as exc:
        detail = " ".join(exc.message.split())[-300:]
        raise SandboxError(f"unpacking the image of build {spec.build_id} failed: {detail}",
                           "the packed image is damaged; bake the image again") from None
    keys = _first_boot(root, spec)
    _save(home, LocalInstance(spec.instance_id, spec.build_id, str(root), spec.user, host_keys=keys))
    return boot(home, spec.instance_id, progress)


def _first_boot(root: Path, spec: LocalSpec) -> tuple[str, ...]:
    """Personalise the unpacked image inside a one-shot container; returns its new ssh host keys."""
    firstboot = read_unit(root, FIRSTBOOT_UNIT)
    command = list(firstboot.exec_start) if firstboot and firstboot.exec_start else ["ssh-keygen", "-A"]
    done = container.run(root, ["/bin/sh", "-c", FIRSTBOOT, "firstboot", *command],
                         setenv={"IF_USER": spec.user, "IF_KEY": spec.public_key.strip(),
                                 "IF_AUTOSTOP": str(spec.autostop)}, timeout=120)
    if done.returncode != 0 or KEYS_MARK not in done.stdout:
        raise SandboxError(f"the first boot of {spec.instance_id} failed: {(done.stderr or done.stdout)[-300:]}",
                           "the image is damaged; bake it again")
    lines = done.stdout.partition(KEYS_MARK)[2].splitlines()
    return tuple(sorted(" ".join(line.split()[:2]) for line in lines if line.startswith(("ssh-", "ecdsa-"))))


def boot(home: Home, instance_id: str, progress: Progress) -> LocalInstance:
    """Start sshd and JupyterLab for an unpacked instance (anything left running inside is ended first)."""
    inst = load(home, instance_id)
    if inst is None:
        raise SandboxError(f"sandbox instance {instance_id} has no disk here", "launch a new one")
    root = Path(inst.root)
    halt(home, instance_id)
    inst = replace(inst, ssh_port=free_port())
    log_path = instances_dir(home) / f"{instance_id}.sshd.log"
    nspawn = container.start(root, sshd_argv(inst.ssh_port, inst.user), log_path)
    inst = replace(inst, sshd_pid=nspawn.pid)
    _save(home, inst)
    try:
        _wait(lambda: sshd_answers(inst.ssh_port), nspawn.pid, f"sshd of {instance_id}", log_path)
        init = _wait(lambda: container.ready_init(nspawn.pid), nspawn.pid, f"the container of {instance_id}",
                     log_path)
        inst = _start_jupyter(home, root, inst, init)
    except BaseException:
        halt(home, instance_id)
        raise
    _save(home, inst)
    progress(f"sandbox: {instance_id} up: sshd on 127.0.0.1:{inst.ssh_port}, "
             f"JupyterLab on 127.0.0.1:{inst.jupyter_port} (pids {inst.sshd_pid}, {inst.jupyter_pid})")
    return inst


def _start_jupyter(home: Home, root: Path, inst: LocalInstance, init: int) -> LocalInstance:
    unit = read_unit(root, JUPYTER_UNIT)
    if unit is None or not unit.exec_start:
        raise SandboxError(f"the image has no {JUPYTER_UNIT}", "bake it with the current packer/ scripts")
    user = check_user(unit.user or inst.user, f"User= of {JUPYTER_UNIT}")
    env = {"PATH": SYSTEMD_PATH, "HOME": f"/home/{user}", "USER": user, "LOGNAME": user, "SHELL": "/bin/bash",
           "LANG": "C.UTF-8"}
    for name in unit.env_files:
        env.update(read_env_file(root, name))
    port = free_port()
    env["IF_JUPYTER_PORT"] = str(port)
    workdir = unit.workdir or f"/home/{user}"
    log_path = instances_dir(home) / f"{inst.instance_id}.jupyter.log"
    for pre in unit.exec_start_pre:
        done = subprocess.run(container.enter_argv(init, expand(pre, env), user=user, workdir=workdir), env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise SandboxError(f"{pre[0]} failed in {inst.instance_id}: {done.stderr.strip()[-300:]}")
    argv = container.enter_argv(init, expand(unit.exec_start, env), user=user, workdir=workdir)
    with open(log_path, "ab") as log:
        server = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)  # outlives this command, like an instance
    _wait(lambda: _listens(port), server.pid, f"JupyterLab of {inst.instance_id}", log_path)
    return replace(inst, jupyter_port=port, jupyter_pid=server.pid)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child and has exited
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(ready: Callable[[], T | None], pid: int, what: str, log_path: Path) -> T:
    def exited() -> str | None:
        if _alive(pid):
            return None
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        return f"exited while starting: {' | '.join(tail)}"

    try:
        return wait_for(ready, timeout=START_TIMEOUT, abort=exited, what=what)
    except WaitTimeout as exc:
        raise SandboxError(str(exc), f"see {log_path}") from None


def _listens(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def halt(home: Home, instance_id: str) -> None:
    """End every process of the instance (Stop); its disk stays."""
    inst = load(home, instance_id)
    if inst is None:
        return
    root = Path(inst.root)
    if root.exists():
        kill_processes(root)
        unmount_all(root)
    for pid in (inst.sshd_pid, inst.jupyter_pid):
        if pid:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
    _save(home, replace(inst, sshd_pid=0, jupyter_pid=0))


def remove(home: Home, instance_id: str) -> None:
    """Terminate: processes ended, the disk and the record removed."""
    inst = load(home, instance_id)
    root = Path(inst.root) if inst else instances_dir(home) / instance_id
    remove_tree(root)
    for suffix in (".json", ".sshd.log", ".jupyter.log"):
        (instances_dir(home) / f"{instance_id}{suffix}").unlink(missing_ok=True)


def running(home: Home) -> list[str]:
    """Ids of local instances whose processes are up."""
    found = []
    for record in sorted(instances_dir(home).glob("i-*.json")):
        inst = load(home, record.stem)
        if inst is not None and is_up(inst):
            found.append(inst.instance_id)
    return found

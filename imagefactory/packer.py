"""Packer: find it, know what its version can do, validate, build with streamed progress, read artifacts.

AMI IDs come from the manifest post-processor (filtered on `last_run_uuid`), cross-checked with the
`-machine-readable` artifact lines, never from Packer's human output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from imagefactory.errors import FactoryError, PackerError
from imagefactory.packer_run import Supervised
from imagefactory.proc import run

# The Packer the factory is tested with (Debian's `apt-get install packer`, what scripts/bootstrap installs):
# what a generated CI workflow installs (imagefactory.schedule)
TESTED_VERSION = "1.6.6"
INSTALL_HINT = ("install Packer: 'sudo apt-get install packer' on Debian/Ubuntu, or see "
                "https://developer.hashicorp.com/packer/install; or set IMAGEFACTORY_PACKER to its path")
QUIET_PREFIXES = ("Adding tag:",)  # per-tag chatter; still in packer.log
VERSION_RE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
AMI_CREATED_RE = re.compile(r"\bAMI: (ami-[0-9a-f]+)")  # amazon-ebs's message right after CreateImage
SCRIPT_FAILED = "Script exited with non-zero exit status"  # Packer's error when a provisioning script fails
STAGE_ERROR_RE = re.compile(r"==> (\[[0-9a-z-]+\]) ERROR: (.+)$")  # a provisioning script's if_die (lib.sh)


@dataclass(frozen=True)
class Capabilities:
    """What a Packer version supports, as flags the templates are gated on."""

    version: tuple[int, int, int]

    @property
    def text(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def plugins(self) -> bool:
        """`packer { required_plugins }` and `packer init` (1.7+; from 1.10 the amazon plugin must be declared)."""
        return self.version >= (1, 7, 0)

    @property
    def metadata_options(self) -> bool:
        """IMDSv2 `metadata_options` on the build instance (amazon plugin, Packer 1.7+)."""
        return self.version >= (1, 7, 0)

    @property
    def deprecate_at(self) -> bool:
        return self.version >= (1, 8, 0)

    def flags(self) -> dict[str, bool]:
        return {"plugins": self.plugins, "metadata_options": self.metadata_options,
                "deprecate_at": self.deprecate_at}


@dataclass(frozen=True)
class Packer:
    path: str
    caps: Capabilities


Abort = Callable[[], "FactoryError | None"]
CANCEL_TIMEOUT = 600.0  # what Packer gets to delete its instance, key and group after Ctrl-C or a signal
ABORT_TIMEOUT = 5.0     # ... after an abort (e.g. the emulator died: there is nothing it can reach to delete)


@dataclass(frozen=True)
class Event:
    """One parsed machine-readable line: `timestamp,target,type,data...`."""

    target: str
    kind: str
    data: tuple[str, ...]


@dataclass
class BuildOutcome:
    """What one `packer build` did, as far as its machine-readable output and manifest tell."""

    ok: bool
    amis: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    log_path: Path | None = None
    run_uuid: str | None = None
    summaries: set[str] = field(default_factory=set)
    created: list[str] = field(default_factory=list)  # AMIs Packer said it created, even if it removed them
    last_step: str | None = None                      # the last step Packer announced ("Creating AMI ...")
    stage_error: str | None = None                    # the last "[stage] why" the current script printed

    def reason(self) -> str:
        """Why the build failed, in one line: the provisioning script's own reason (lib.sh's if_die) when
        a script failed, rather than Packer's "Script exited with non-zero exit status"; else Packer's."""
        last = self.errors[-1].splitlines()[0] if self.errors else "see the log"
        return self.stage_error if self.stage_error and last.startswith(SCRIPT_FAILED) else last
    killed: bool = False                              # did not stop in time after a cancel: SIGKILLed


class PackerCancelled(PackerError):
    """Packer was cancelled and has stopped: by a KeyboardInterrupt (Ctrl-C, or a signal the CLI raises
    as one) or by an abort (a FactoryError such as "the sandbox emulator stopped"). Carries what Packer
    did so far, so the bake can record what really happened."""

    def __init__(self, outcome: BuildOutcome, cause: BaseException) -> None:
        super().__init__("Packer was cancelled", f"Packer's log: {outcome.log_path}")
        self.outcome = outcome
        self.cause = cause


def find_packer(env: Mapping[str, str] | None = None) -> Packer:
    env = os.environ if env is None else env
    path = env.get("IMAGEFACTORY_PACKER") or shutil.which("packer", path=env.get("PATH", os.defpath))
    if not path:
        raise PackerError("Packer was not found on PATH", INSTALL_HINT)
    out = run([path, "version"], timeout=30, check=False)
    match = VERSION_RE.search(out.stdout)
    if out.returncode != 0 or not match:
        raise PackerError(f"'{path} version' did not print a version: {out.stdout.strip()[:200]}", INSTALL_HINT)
    major, minor, patch = (int(g) for g in match.groups())
    return Packer(path=path, caps=Capabilities((major, minor, patch)))


def parse_line(line: str) -> Event | None:
    parts = line.split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    data = tuple(p.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "\r") for p in parts[3:])
    return Event(target=parts[1], kind=parts[2], data=data)


def note(event: Event, outcome: BuildOutcome) -> None:
    """Record what an event says about the build: artifacts, errors, AMIs created, the current step."""
    if event.kind == "artifact" and len(event.data) >= 3 and event.data[1] == "id":
        outcome.amis.update(parse_artifact_id(event.data[2]))
    elif event.kind == "error" and event.data:
        outcome.errors.append(event.data[0].strip())
    elif event.kind == "ui" and len(event.data) >= 2:
        text = event.data[1].strip()
        if stage_error := STAGE_ERROR_RE.search(text):
            outcome.stage_error = f"{stage_error.group(1)} {stage_error.group(2).strip()}"
        elif event.data[0] == "say" and text.startswith("==> "):
            outcome.last_step = text.partition(": ")[2] or text[4:]
            if outcome.last_step.startswith("Provisioning with"):
                outcome.stage_error = None  # a new script: an earlier one's line is not this one's reason
        elif event.data[0] == "message" and (created := AMI_CREATED_RE.search(text)):
            outcome.created.append(created.group(1))


def readable(event: Event) -> str | None:
    """The human line for a progress event, or None for bookkeeping events."""
    if event.kind == "ui" and len(event.data) >= 2 and event.data[0] in ("say", "message", "error"):
        text = event.data[1].strip("\n")
        if event.data[0] == "message" and text.strip().startswith(QUIET_PREFIXES):
            return None
        return text or None
    return None


def parse_artifact_id(artifact_id: str) -> dict[str, str]:
    """`us-east-2:ami-1,us-west-2:ami-2` -> {region: ami}."""
    amis: dict[str, str] = {}
    for item in artifact_id.split(","):
        region, _, ami = item.strip().partition(":")
        if region and ami.startswith("ami-"):
            amis[region] = ami
    return amis


def read_manifest(path: Path) -> tuple[str | None, dict[str, str]]:
    """The last run's uuid and its AMIs from the manifest post-processor's file."""
    if not path.exists():
        return None, {}
    data = json.loads(path.read_text())
    uuid = data.get("last_run_uuid")
    amis: dict[str, str] = {}
    for build in data.get("builds", []):
        if build.get("packer_run_uuid") == uuid:
            amis.update(parse_artifact_id(build.get("artifact_id", "")))
    return uuid, amis


def _argv(packer: Packer, command: str, build_dir: Path, var_file: Path, extra: list[str]) -> list[str]:
    return [packer.path, command, *extra, f"-var-file={var_file.name}", "."]


def validate(packer: Packer, build_dir: Path, var_file: Path, env: Mapping[str, str]) -> None:
    out = run(_argv(packer, "validate", build_dir, var_file, []), cwd=build_dir, env=env, timeout=120, check=False)
    if out.returncode != 0:
        raise PackerError(f"packer validate failed in {build_dir}: {(out.stdout + out.stderr).strip()[-800:]}",
                          "this is a bug in the rendered template; please report it with the build directory")


def fmt_check(packer: Packer, build_dir: Path) -> str:
    """`packer fmt -check`: returns '' when every file is formatted, else the files it would change."""
    out = run([packer.path, "fmt", "-check", "."], cwd=build_dir, timeout=60, check=False)
    return "" if out.returncode == 0 else (out.stdout + out.stderr).strip()


def init(packer: Packer, build_dir: Path, env: Mapping[str, str], progress: Callable[[str], None]) -> None:
    if not packer.caps.plugins:
        return
    progress("packer init: installing the plugins the template declares")
    out = run([packer.path, "init", "."], cwd=build_dir, env=env, timeout=600, check=False)
    if out.returncode != 0:
        raise PackerError(f"packer init failed: {(out.stdout + out.stderr).strip()[-800:]}",
                          "check network access to the plugin source (github.com)")




def build(packer: Packer, build_dir: Path, var_file: Path, env: Mapping[str, str],
          progress: Callable[[str], None], *, abort: Abort | None = None) -> BuildOutcome:
    """Run `packer build -machine-readable`, streaming readable progress and keeping the full log.

    Packer runs in its own session, so a terminal's Ctrl-C reaches only us. On KeyboardInterrupt (or any
    subclass: SIGTERM/SIGHUP arrive as one), or when `abort()` (asked every second) returns an error,
    Packer's whole process group is cancelled and waited for (see `packer_run.Supervised.cancel`); then
    PackerCancelled is raised, carrying the outcome so far.
    """
    log_path = build_dir / "packer.log"
    argv = _argv(packer, "build", build_dir, var_file, ["-machine-readable", "-color=false"])
    env = {**env, "PACKER_LOG": "1", "PACKER_LOG_PATH": str(build_dir / "packer-debug.log"),
           "CHECKPOINT_DISABLE": "1"}
    outcome = BuildOutcome(ok=False, log_path=log_path)
    with log_path.open("w") as log, Supervised(argv, build_dir, env, lambda line: _line(line, log, outcome,
                                                                                        progress)) as proc:
        try:
            reason = proc.follow(abort)
        except KeyboardInterrupt as exc:
            _cancel(proc, outcome, CANCEL_TIMEOUT, progress)
            raise PackerCancelled(outcome, exc) from None
        if reason is not None:
            _cancel(proc, outcome, ABORT_TIMEOUT, progress)
            raise PackerCancelled(outcome, reason)
        returncode = proc.returncode
    uuid, manifest_amis = read_manifest(build_dir / "manifest.json")
    outcome.run_uuid = uuid
    if manifest_amis:
        outcome.amis = manifest_amis
    outcome.ok = returncode == 0 and bool(outcome.amis)
    if returncode == 0 and not outcome.amis:
        outcome.errors.append("Packer finished but reported no AMI")
    return outcome


def _cancel(proc: Supervised, outcome: BuildOutcome, timeout: float, progress: Callable[[str], None]) -> None:
    step = outcome.last_step  # the step that was cancelled, not the clean-up steps that follow
    outcome.killed = not proc.cancel(timeout, progress)
    outcome.last_step = step


def _line(line: str, log: TextIO, outcome: BuildOutcome, progress: Callable[[str], None]) -> None:
    log.write(line)
    log.flush()
    event = parse_line(line.rstrip("\n"))
    if event is None:
        return
    note(event, outcome)
    text = readable(event)
    if text and text.startswith("--> "):  # the artifact summary, repeated once per post-processor
        if text in outcome.summaries:
            return
        outcome.summaries.add(text)
    if text:
        for part in text.splitlines():
            progress(part)

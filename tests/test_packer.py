"""Packer glue: version detection, machine-readable parsing, manifest reading, and the supervisor that runs
Packer: cancelling its whole process group, the cancel deadline, aborts."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from imagefactory.errors import PackerError
from imagefactory.packer import (
    BuildOutcome,
    Capabilities,
    find_packer,
    note,
    parse_artifact_id,
    parse_line,
    read_manifest,
    readable,
)
from imagefactory.packer_run import Supervised


def test_finds_the_installed_packer_and_its_version() -> None:
    packer = find_packer()
    assert packer.caps.version >= (1, 6, 0)
    assert packer.caps.text.count(".") == 2


def test_missing_packer_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(PackerError) as err:
        find_packer({"PATH": str(tmp_path)})
    assert "apt-get install packer" in err.value.hint


def test_capabilities_by_version() -> None:
    assert not Capabilities((1, 6, 6)).plugins
    assert not Capabilities((1, 6, 6)).metadata_options
    assert Capabilities((1, 7, 0)).plugins
    assert Capabilities((1, 11, 2)).metadata_options


def test_machine_readable_lines() -> None:
    line = ("1795815469,amazon-ebs.x,artifact,0,id,eu-west-1:ami-1%!(PACKER_COMMA)us-east-2:ami-2")
    event = parse_line(line)
    assert event is not None and event.kind == "artifact"
    assert parse_artifact_id(event.data[2]) == {"eu-west-1": "ami-1", "us-east-2": "ami-2"}
    say = parse_line("1795815469,,ui,say,==> amazon-ebs.x: Creating AMI\\nsecond line")
    assert say is not None and readable(say) == "==> amazon-ebs.x: Creating AMI\nsecond line"
    assert parse_line("not machine readable") is None


def test_manifest_is_filtered_on_last_run_uuid(tmp_path: Path) -> None:
    manifest = {
        "builds": [
            {"artifact_id": "us-west-2:ami-old", "packer_run_uuid": "run-1"},
            {"artifact_id": "us-west-2:ami-new,us-east-2:ami-new2", "packer_run_uuid": "run-2"},
        ],
        "last_run_uuid": "run-2",
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    uuid, amis = read_manifest(tmp_path / "manifest.json")
    assert uuid == "run-2"
    assert amis == {"us-west-2": "ami-new", "us-east-2": "ami-new2"}


# ---------------------------------------------------------------------------------- the supervisor

WRAPPER = """\
trap 'echo "wrapper got INT"' INT
bash -c 'trap "echo child cancelled; exit 3" INT; echo child running; while :; do sleep 0.1; done'
echo "wrapper done"
"""
DEAF = "trap '' INT; echo deaf; exec sleep 300"


def supervised(tmp_path: Path, script: str) -> tuple[Supervised, list[str]]:
    lines: list[str] = []
    return Supervised(["bash", "-c", script], tmp_path, os.environ, lines.append), lines


def test_cancel_reaches_the_child_of_a_wrapper_that_does_not_forward_signals(tmp_path: Path) -> None:
    """Packer 1.6.6's shape: a wrapper whose child does the work; SIGINT goes to the whole group."""
    proc, lines = supervised(tmp_path, WRAPPER)
    with proc:
        while "child running\n" not in lines:
            proc._take(5)
        started = time.monotonic()
        assert proc.cancel(10, lambda _: None) is True
        assert time.monotonic() - started < 5
    assert "child cancelled\n" in lines and lines[-1] == "wrapper done\n"


def test_cancel_deadline_holds_while_the_process_prints_nothing(tmp_path: Path) -> None:
    proc, lines = supervised(tmp_path, DEAF)
    said: list[str] = []
    with proc:
        while "deaf\n" not in lines:
            proc._take(5)
        started = time.monotonic()
        assert proc.cancel(1.5, said.append) is False
        assert time.monotonic() - started < 5
        assert proc.returncode == -signal.SIGKILL
    assert "was killed" in said[-1] and "may be left" in said[-1]


def test_follow_stops_for_an_abort_and_nothing_is_left_running(tmp_path: Path) -> None:
    marker = f"if-supervised-{os.getpid()}"
    proc, _ = supervised(tmp_path, f"exec -a {marker} sleep 300")
    gone = PackerError("the thing it talks to is gone")
    with proc:
        started = time.monotonic()
        assert proc.follow(lambda: gone if time.monotonic() - started > 1 else None) is gone
        assert proc.returncode is None, "follow leaves the decision to cancel to its caller"
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if marker.encode() in _read(p)]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_events_tell_the_created_ami_and_the_current_step() -> None:
    outcome = BuildOutcome(ok=False)
    for line in ("1,,ui,say,==> amazon-ebs.image: Provisioning with shell script: provision/scripts/60-post-build.sh",
                 "2,,ui,message,    amazon-ebs.image: AMI: ami-0123abcd",
                 "3,amazon-ebs.image,error,Build was cancelled."):
        event = parse_line(line)
        assert event is not None
        note(event, outcome)
    assert outcome.last_step == "Provisioning with shell script: provision/scripts/60-post-build.sh"
    assert outcome.created == ["ami-0123abcd"] and outcome.errors == ["Build was cancelled."]


def test_a_failed_script_is_reported_by_its_own_reason_not_packers_exit_status() -> None:
    outcome = BuildOutcome(ok=False)
    for line in ("1,,ui,say,==> amazon-ebs.image: Provisioning with shell script: provision/scripts/60-post-build.sh",
                 "2,,ui,message,    amazon-ebs.image: ==> [60-post-build] ERROR: only echoed by the repo",
                 "3,,ui,say,==> amazon-ebs.image: Provisioning with shell script: provision/scripts/80-smoke.sh",
                 "4,,ui,error,==> amazon-ebs.image: ==> [80-smoke] ERROR: a notebook failed: nb.ipynb cell 2: boom",
                 "5,amazon-ebs.image,error,Script exited with non-zero exit status: 1.Allowed exit codes are: [0]"):
        event = parse_line(line)
        assert event is not None
        note(event, outcome)
    assert outcome.reason() == "[80-smoke] a notebook failed: nb.ipynb cell 2: boom"
    outcome.errors.append("Error creating AMI: throttled")
    assert outcome.reason() == "Error creating AMI: throttled", "Packer's own failure is not a script's"

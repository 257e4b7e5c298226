"""Packer glue: version detection, machine-readable parsing, manifest reading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagefactory.errors import PackerError
from imagefactory.packer import (
    Capabilities,
    find_packer,
    parse_artifact_id,
    parse_line,
    read_manifest,
    readable,
)


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

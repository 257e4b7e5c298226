"""choose_target decides whether a command spends money (AWS) or not (the sandbox).

The real boto3 credential chain reads real files in a temp HOME; the EC2 instance role comes from a
local instance-metadata service on loopback (botocore's AWS_EC2_METADATA_SERVICE_ENDPOINT), the way an
EC2 instance serves it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from imagefactory.cloud.target import CREDENTIAL_ENV, choose_target

ROLE = "factory-builder"


def never() -> bool:
    return False


def always() -> bool:
    return True


class Metadata(BaseHTTPRequestHandler):
    """IMDSv2: a token on PUT, then the role name and its temporary credentials (when a role is attached)."""

    role: ClassVar[str | None] = ROLE
    seen: ClassVar[list[str]] = []

    def do_PUT(self) -> None:
        self.seen.append(self.path)
        self._answer(200, "token-1" if self.path == "/latest/api/token" else "")

    def do_GET(self) -> None:
        self.seen.append(self.path)
        base = "/latest/meta-data/iam/security-credentials/"
        if self.role and self.path == base:
            self._answer(200, self.role)
        elif self.role and self.path == base + self.role:
            expires = (datetime.now(UTC) + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._answer(200, json.dumps({"Code": "Success", "AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "s",
                                          "Token": "t", "Expiration": expires}))
        else:
            self._answer(404, "")

    def _answer(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No AWS variable, an empty HOME: what a machine without credentials has."""
    for key in list(os.environ):
        if key.startswith("AWS_") or key == "IMAGEFACTORY_SANDBOX":
            monkeypatch.delenv(key)
    home = tmp_path / "user"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def metadata(clean: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Metadata]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
    Metadata.seen = []
    Metadata.role = ROLE
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{server.server_port}/")
    try:
        yield Metadata
    finally:
        server.shutdown()
        server.server_close()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_nothing_configured_off_ec2_is_the_sandbox_without_probing(metadata: type[Metadata]) -> None:
    assert choose_target(sandbox=False, on_ec2=never) == "sandbox"
    assert metadata.seen == [], "off EC2 the metadata service is never asked"


@pytest.mark.parametrize("key", CREDENTIAL_ENV)
def test_a_credential_variable_is_aws(clean: Path, monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv(key, "x")
    assert choose_target(sandbox=False, on_ec2=never) == "aws"


def test_sandbox_flag_and_variable_win_over_credentials(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    assert choose_target(sandbox=True, on_ec2=always) == "sandbox"
    monkeypatch.setenv("IMAGEFACTORY_SANDBOX", "1")
    assert choose_target(sandbox=False, on_ec2=always) == "sandbox"
    monkeypatch.setenv("IMAGEFACTORY_SANDBOX", "0")
    assert choose_target(sandbox=False, on_ec2=never) == "aws"


def test_env_mapping_is_read_instead_of_the_process(clean: Path) -> None:
    assert choose_target(sandbox=False, env={"AWS_PROFILE": "work"}, on_ec2=never) == "aws"
    both = {"IMAGEFACTORY_SANDBOX": "1", "AWS_PROFILE": "work"}
    assert choose_target(sandbox=False, env=both, on_ec2=never) == "sandbox"


def test_a_credentials_file_with_keys_is_aws(metadata: type[Metadata], clean: Path) -> None:
    write(clean / ".aws" / "credentials", "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = s\n")
    assert choose_target(sandbox=False, on_ec2=never) == "aws"


def test_a_config_file_without_credentials_is_the_sandbox(metadata: type[Metadata], clean: Path) -> None:
    metadata.role = None
    write(clean / ".aws" / "config", "[default]\nregion = us-west-2\n")
    assert choose_target(sandbox=False, on_ec2=never) == "sandbox"


def test_a_config_file_whose_profile_has_keys_is_aws(metadata: type[Metadata], clean: Path) -> None:
    write(clean / ".aws" / "config", "[default]\nregion = us-west-2\naws_access_key_id = AKIAEXAMPLE\n"
                                     "aws_secret_access_key = s\n")
    assert choose_target(sandbox=False, on_ec2=never) == "aws"


def test_credentials_file_named_by_variable_is_aws(metadata: type[Metadata], clean: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = clean.parent / "elsewhere" / "creds"
    write(elsewhere, "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(elsewhere))
    assert choose_target(sandbox=False, on_ec2=never) == "aws"


def test_on_ec2_an_instance_role_is_aws(metadata: type[Metadata]) -> None:
    assert choose_target(sandbox=False, on_ec2=always) == "aws"
    assert f"/latest/meta-data/iam/security-credentials/{ROLE}" in metadata.seen


def test_on_ec2_without_a_role_is_the_sandbox(metadata: type[Metadata]) -> None:
    metadata.role = None
    assert choose_target(sandbox=False, on_ec2=always) == "sandbox"
    assert "/latest/meta-data/iam/security-credentials/" in metadata.seen

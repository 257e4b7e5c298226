"""Which cloud a command talks to: real AWS (the standard boto3 credential chain) or the embedded
sandbox emulator. `choose_target` is the one decision; `open_target` makes it real.

The choice: `--sandbox` forces the sandbox; otherwise AWS when credentials are configured, else the
sandbox, announced loudly on the first line of output.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagefactory.errors import CloudError
from imagefactory.home import Home

if TYPE_CHECKING:
    from imagefactory.recipe.python import PythonDefault

SANDBOX_NOTICE = ("SANDBOX: no AWS credentials found (or --sandbox given); using the local EC2 emulator at {endpoint}. "
                  "Nothing here touches AWS; results go to {catalog}, apart from real builds.")
CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


@dataclass(frozen=True)
class Target:
    kind: str                                   # "aws" or "sandbox"
    account: str
    endpoint: str | None = None                 # the emulator's URL in the sandbox
    env: dict[str, str] = field(default_factory=dict)   # extra env for Packer and boto3 (sandbox creds)
    # The sandbox's data plane, whoever calls: the home whose emulator this is (its .sandbox/ holds the packed
    # images and the local instances); None on AWS, or for an emulator kept outside a home.
    sandbox_home: Home | None = None

    @property
    def sandbox(self) -> bool:
        return self.kind == "sandbox"

    def client(self, service: str, region: str) -> Any:
        import boto3

        if self.sandbox:
            return boto3.client(service, region_name=region, endpoint_url=self.endpoint,
                                aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                                aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
                                aws_session_token=self.env.get("AWS_SESSION_TOKEN"))
        return boto3.client(service, region_name=region)

    def packer_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not (self.sandbox and k.startswith("AWS_"))}
        return {**env, **self.env}


def python_default(kind: str) -> PythonDefault:
    """The Python a target builds when nothing states one: the sandbox's own there (its rootfs has only
    that one), the factory default on AWS (uv fetches any CPython there)."""
    from imagefactory.recipe.python import FACTORY_DEFAULT, PythonDefault

    if kind != "sandbox":
        return FACTORY_DEFAULT
    from imagefactory.sandbox.base import SANDBOX_PYTHON

    return PythonDefault(SANDBOX_PYTHON, "the sandbox's own Python", searches=False)  # it builds only that one


def has_aws_credentials(env: Mapping[str, str], home: Path, on_ec2: Callable[[], bool]) -> bool:
    """Cheap check for configured credentials, without the slow metadata-service probe off EC2."""
    if any(env.get(k) for k in CREDENTIAL_ENV):
        return True
    aws_dir = Path(env.get("AWS_CONFIG_FILE", home / ".aws" / "config")).parent
    if any((aws_dir / f).is_file() for f in ("credentials", "config")) or env.get("AWS_SHARED_CREDENTIALS_FILE"):
        return _chain_finds_credentials()
    return on_ec2() and _chain_finds_credentials()


def _chain_finds_credentials() -> bool:
    import boto3

    return boto3.session.Session().get_credentials() is not None


def running_on_ec2() -> bool:
    for probe in ("/sys/hypervisor/uuid", "/sys/devices/virtual/dmi/id/board_asset_tag"):
        try:
            text = Path(probe).read_text().strip().lower()
        except OSError:
            continue
        if text.startswith(("ec2", "i-")):
            return True
    return False


def choose_target(*, sandbox: bool, env: Mapping[str, str] | None = None,
                  on_ec2: Callable[[], bool] = running_on_ec2) -> str:
    env = os.environ if env is None else env
    if sandbox or env.get("IMAGEFACTORY_SANDBOX") == "1":
        return "sandbox"
    return "aws" if has_aws_credentials(env, Path.home(), on_ec2) else "sandbox"


def home_of_emulator(state_dir: Path) -> Home | None:
    """The factory home whose emulator keeps its state in `state_dir` (`Home.emulator_dir`), if any."""
    state_dir = Path(state_dir).resolve()
    home = Home(state_dir.parent.parent)
    return home if home.emulator_dir == state_dir else None


def open_target(kind: str, emulator_dir: Path) -> Target:
    if kind == "sandbox":
        from imagefactory.sandbox.emulator import SANDBOX_ACCOUNT_ID, ensure_up, sandbox_credentials

        info = ensure_up(emulator_dir)
        return Target("sandbox", SANDBOX_ACCOUNT_ID, info.endpoint, dict(sandbox_credentials()),
                      home_of_emulator(emulator_dir))
    target = Target("aws", "")
    try:
        account = target.client("sts", os.environ.get("AWS_REGION", "us-east-1")).get_caller_identity()["Account"]
    except Exception as exc:  # botocore raises many kinds; all mean "cannot use these credentials"
        raise CloudError(f"AWS credentials were found but do not work: {type(exc).__name__}: {exc}",
                         "check AWS_PROFILE / aws configure, or pass --sandbox") from None
    return Target("aws", account)


def sandbox_at_endpoint(env: Mapping[str, str] | None = None) -> Target | None:
    """The sandbox, as whoever the configured credentials are, when AWS_ENDPOINT_URL is its emulator (a
    student rehearsing without a home: their assumed-role keys, the instructor's emulator); else None."""
    env = os.environ if env is None else env
    endpoint = env.get("AWS_ENDPOINT_URL")
    from imagefactory.sandbox.emulator import sandbox_credentials, state_dir_at

    state_dir = state_dir_at(endpoint) if endpoint else None
    if endpoint is None or state_dir is None:
        return None
    import boto3

    found = boto3.session.Session().get_credentials()
    creds = dict(sandbox_credentials()) if found is None else {
        "AWS_ACCESS_KEY_ID": found.access_key, "AWS_SECRET_ACCESS_KEY": found.secret_key,
        **({"AWS_SESSION_TOKEN": found.token} if found.token else {})}
    target = Target("sandbox", "", endpoint.rstrip("/"), creds, home_of_emulator(state_dir))
    try:
        account = target.client("sts", env.get("AWS_REGION", "us-east-1")).get_caller_identity()["Account"]
    except Exception as exc:  # botocore raises many kinds; all mean "cannot use these credentials"
        raise CloudError(f"the sandbox emulator at {endpoint} refuses these credentials: {type(exc).__name__}: "
                         f"{exc}", "use credentials it gave (sts assume-role), or unset AWS_ENDPOINT_URL") from None
    return Target("sandbox", str(account), target.endpoint, creds, target.sandbox_home)


@lru_cache(maxsize=1)
def known_regions() -> frozenset[str]:
    import botocore.session

    session = botocore.session.get_session()
    return frozenset(session.get_available_regions("ec2", partition_name="aws"))


def check_regions(regions: tuple[str, ...]) -> tuple[str, ...]:
    if not regions:
        raise CloudError("no regions given", "pass --regions us-west-2,us-east-2")
    known = known_regions()
    for region in regions:
        if region not in known:
            raise CloudError(f"unknown region {region!r}", f"valid regions: {', '.join(sorted(known))}")
    if len(set(regions)) != len(regions):
        raise CloudError(f"a region is listed twice in {','.join(regions)}", "list each region once")
    return regions


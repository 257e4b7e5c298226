"""The embedded sandbox: a local EC2 emulator (moto, seeded and persisted) that Packer and boto3 talk to.

Only the lifecycle API is imported here; the server modules (which import moto) load in the server process.
"""

from imagefactory.sandbox.emulator import (
    SANDBOX_ACCOUNT_ID,
    EmulatorInfo,
    down,
    ensure_up,
    sandbox_credentials,
    status,
)

__all__ = ["SANDBOX_ACCOUNT_ID", "EmulatorInfo", "down", "ensure_up", "sandbox_credentials", "status"]

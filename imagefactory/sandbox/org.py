"""The sandbox's classroom: an organization with an OU of student accounts, and the KMS keys of each region.

A class must be rehearsable offline, so the emulator's account (`SANDBOX_ACCOUNT_ID`) is the management
account of an organization with fixed IDs (rosters and tests can name them), holding:

    STUDENTS        accounts in the OU `students` (OU_ARN)
    OTHER_MEMBER    an account of the organization outside that OU
    OUTSIDER        an account outside the organization (any account can be assumed in the sandbox)

and, in every region, the AWS-managed key `alias/aws/ebs` and a customer-managed key `CLASS_KEY_ALIAS`,
both with fixed IDs. Student accounts are reached as on AWS, by assuming `OrganizationAccountAccessRole` in
them with STS.

The constants are importable anywhere (no moto import at module level); `seed`, `dump` and `restore` run
in the server process only and keep the keys' grants and policies across restarts (`state.json`).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from imagefactory.sandbox.emulator import SANDBOX_ACCOUNT_ID

ORG_ID = "o-a1b2c3d4e5"
ROOT_ID = "r-a1b2"
OU_ID = "ou-a1b2-students"
ORG_ARN = f"arn:aws:organizations::{SANDBOX_ACCOUNT_ID}:organization/{ORG_ID}"
OU_ARN = f"arn:aws:organizations::{SANDBOX_ACCOUNT_ID}:ou/{ORG_ID}/{OU_ID}"
STUDENTS = ("210000000001", "210000000002", "210000000003")
OTHER_MEMBER = "220000000001"
OUTSIDER = "990000000001"
ACCESS_ROLE = "OrganizationAccountAccessRole"
CLASS_KEY_ALIAS = "alias/imagefactory-class"
EBS_KEY_ALIAS = "alias/aws/ebs"
_KEYS = uuid.UUID("6f1d3a52-3c51-4b8e-9d0e-5a9b1f2c7e11")


def role_arn(account: str) -> str:
    """The role the management account assumes in a member account."""
    return f"arn:aws:iam::{account}:role/{ACCESS_ROLE}"


def key_id(region: str, alias: str) -> str:
    """The fixed ID of a seeded key: the same for the same region and alias on every start."""
    return str(uuid.uuid5(_KEYS, f"{region}:{alias}"))


def key_arn(region: str, alias: str, account: str = SANDBOX_ACCOUNT_ID) -> str:
    return f"arn:aws:kms:{region}:{account}:key/{key_id(region, alias)}"


# ------------------------------------------------------------------------------------------------ seeding
@contextmanager
def _fixed(module: Any, name: str, values: Iterator[Any]) -> Iterator[None]:
    """moto's random-ID function `module.name` answering `values` in turn, while seeding."""
    original: Callable[..., Any] = getattr(module, name)
    setattr(module, name, lambda *_args: next(values))
    try:
        yield
    finally:
        setattr(module, name, original)


def _seed_organization() -> None:
    from moto.organizations import utils
    from moto.organizations.models import organizations_backends

    backend = organizations_backends[SANDBOX_ACCOUNT_ID]["aws"]
    if backend.org is not None:
        return
    organizations_backends.master_accounts.pop(SANDBOX_ACCOUNT_ID, None)
    with _fixed(utils, "make_random_org_id", iter([ORG_ID])), _fixed(utils, "make_random_root_id", iter([ROOT_ID])):
        backend.create_organization(region="us-east-1", FeatureSet="ALL")
    with _fixed(utils, "make_random_ou_id", iter([OU_ID])):
        backend.create_organizational_unit(Name="students", ParentId=ROOT_ID)
    members = (*STUDENTS, OTHER_MEMBER)
    with _fixed(utils, "make_random_account_id", iter(members)):
        for number in range(1, len(members) + 1):
            backend.create_account(AccountName=f"student-{number}", Email=f"student-{number}@sandbox.invalid")
    for account in STUDENTS:
        backend.move_account(AccountId=account, SourceParentId=ROOT_ID, DestinationParentId=OU_ID)


def _seed_key(backend: Any, region: str, alias: str, description: str, manager: str) -> None:
    wanted = key_id(region, alias)
    if wanted in backend.keys:
        return
    key = backend.create_key(None, "ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT", description, None)
    backend.keys.pop(key.id)
    key.id, key.arn, key.key_manager = wanted, key_arn(region, alias), manager
    backend.keys[wanted] = key
    backend.create_alias(wanted, alias)


def seed(account_id: str) -> None:
    """The organization, and both keys in every region (idempotent; after a reset it seeds again)."""
    from moto.kms import models as kms_models

    if account_id != SANDBOX_ACCOUNT_ID:
        return
    _seed_organization()
    regions = kms_models.kms_backends[account_id].regions
    # Symmetric keys never sign: skip the RSA key moto makes for every key (70 ms each, 2 per region).
    with _fixed(kms_models, "generate_private_key", itertools.repeat(None)):
        for region in regions:
            backend = kms_models.kms_backends[account_id][region]
            _seed_key(backend, region, EBS_KEY_ALIAS, "Default key that protects my EBS volumes when no other key "
                                                      "is defined", "AWS")
            _seed_key(backend, region, CLASS_KEY_ALIAS, "imagefactory sandbox: the class key", "CUSTOMER")


# ------------------------------------------------------------------------------------------- persistence
def _seeded_keys(account_id: str) -> Iterator[tuple[str, Any]]:
    from moto.kms.models import kms_backends

    for region, backend in list(kms_backends[account_id].items()):
        for alias in (CLASS_KEY_ALIAS, EBS_KEY_ALIAS):
            key = backend.keys.get(key_id(region, alias))
            if key is not None:
                yield region, key


def dump(account_id: str) -> dict[str, Any]:
    """The seeded keys' grants and changed policies, as JSON-ready data ({} when nothing changed)."""
    keys: dict[str, Any] = {}
    for region, key in _seeded_keys(account_id):
        grants = [{"id": g.id, "token": g.token, "name": g.name, "grantee": g.grantee_principal,
                   "retiring": g.retiring_principal, "operations": list(g.operations),
                   "constraints": g.constraints} for g in list(key.grants.values())]
        policy = key.policy if key.policy != key.generate_default_policy() else None
        if grants or policy:
            keys.setdefault(region, {})[key.id] = {"grants": grants, "policy": policy}
    return {"kms": keys} if keys else {}


def restore(account_id: str, state: dict[str, Any]) -> None:
    """Put back what `dump` saved (keys that are no longer seeded are skipped)."""
    from moto.kms.models import Grant

    found = {key.id: key for _region, key in _seeded_keys(account_id)}
    for keys in (state.get("kms") or {}).values():
        for saved_id, saved in keys.items():
            key = found.get(saved_id)
            if key is None:
                continue
            if saved["policy"]:
                key.policy = saved["policy"]
            for g in saved["grants"]:
                grant = Grant(key.id, g["name"], g["grantee"], g["operations"], g["constraints"], g["retiring"])
                grant.id, grant.token = g["id"], g["token"]
                key.grants[grant.id] = grant

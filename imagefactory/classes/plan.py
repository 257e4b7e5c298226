"""The sharing plan: what to add and remove so that one AMI's permissions match a class roster. Pure.

Input per region: the roster's `Who`, what AWS reports now (launch permissions, and the snapshot's
createVolumePermission user ids), and what this class and the other classes recorded as theirs. Output: a
`RegionPlan` of adds and removes, or a `ClassError` refusing it:

- an AMI that is public is refused (nothing here ever makes or keeps one public);
- a plan past `QUOTA` launch-permission entities (an organization or an OU counts as one) is refused with
  the advice to share with an OU;
- only entries this class recorded as its own are removed, and never one another class still claims, so
  classes sharing one image, and permissions given by hand, are left alone;
- snapshot createVolumePermission goes to the roster's accounts only with `allow_copy`; otherwise what the
  class gave before is taken back.

Entries are recorded by a short digest (`digest`), so the catalog holds counts and ARNs, never account lists.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from imagefactory.classes.roster import Who
from imagefactory.errors import ClassError

QUOTA = 1000
BATCH = 100
USER, ORG, OU = "UserId", "OrganizationArn", "OrganizationalUnitArn"

Entry = tuple[str, str]  # (kind, value): ("UserId", "210000000001"), ("OrganizationArn", "arn:…")


def digest(entry: Entry) -> str:
    """How the catalog names an entry a class added (a digest, so that it holds no account list)."""
    return hashlib.sha256(f"{entry[0]}={entry[1]}".encode()).hexdigest()[:16]


def wanted(who: Who) -> frozenset[Entry]:
    found = {(USER, a) for a in who.accounts} | {(OU, ou) for ou in who.ous}
    if who.organization:
        found.add((ORG, who.organization))
    return frozenset(found)


def entries(permissions: Iterable[dict[str, str]]) -> frozenset[Entry]:
    """Launch permissions as AWS reports them -> entries (a `Group` is kept as ("Group", "all"))."""
    found = set()
    for perm in permissions:
        for kind in (USER, ORG, OU, "Group"):
            if kind in perm:
                found.add((kind, perm[kind]))
    return frozenset(found)


@dataclass(frozen=True)
class Current:
    """What AWS reports for one AMI in one region, and what the classes recorded there."""

    region: str
    ami: str
    launch: frozenset[Entry]
    copy_users: frozenset[str] = frozenset()      # snapshot createVolumePermission user ids
    ours: frozenset[str] = frozenset()            # digests this class recorded as added
    others: frozenset[str] = frozenset()          # digests other classes recorded


@dataclass(frozen=True)
class RegionPlan:
    region: str
    ami: str
    add: tuple[Entry, ...]
    remove: tuple[Entry, ...]
    copy_add: tuple[str, ...]
    copy_remove: tuple[str, ...]
    after: frozenset[Entry]        # the launch permissions once applied
    ours_after: frozenset[str]     # digests this class holds once applied

    @property
    def changes(self) -> int:
        return len(self.add) + len(self.remove) + len(self.copy_add) + len(self.copy_remove)

    def batches(self, which: str) -> list[list[dict[str, str]]]:
        """The adds or removes as ModifyImageAttribute payloads of at most BATCH entries each."""
        items = [{kind: value} for kind, value in (self.add if which == "add" else self.remove)]
        return [items[i:i + BATCH] for i in range(0, len(items), BATCH)]


def plan_region(current: Current, who: Who, *, allow_copy: bool) -> RegionPlan:
    """The adds and removes that make `current` match `who` (an empty `Who` unshares what the class added)."""
    if ("Group", "all") in current.launch:
        raise ClassError(f"{current.ami} in {current.region} is public", "make it private first (aws ec2 "
                         f"reset-image-attribute --image-id {current.ami} --attribute launchPermission); the "
                         "factory never shares publicly")
    want = wanted(who)
    removable = {e for e in current.launch - want if digest(e) in current.ours and digest(e) not in current.others}
    add = sorted(want - current.launch)
    after = (current.launch | want) - removable
    if len(after) > QUOTA:
        raise ClassError(f"{current.ami} in {current.region} would have {len(after)} launch permissions, past "
                         f"AWS's quota of {QUOTA} per AMI", "share with an organizational unit (ous:) instead of "
                         "listing its accounts one by one")
    students = {a for kind, a in want if kind == USER}
    gave = {a for a in current.copy_users if digest((USER, a)) in current.ours and digest((USER, a)) not in
            current.others}
    copy_add = sorted(students - current.copy_users) if allow_copy else []
    copy_remove = sorted(gave - students) if allow_copy else sorted(gave)
    # the class owns what it adds and what it owned before; an entry given by hand before stays the giver's
    ours_after = frozenset((current.ours & {digest(e) for e in after}) | {digest(e) for e in add})
    return RegionPlan(current.region, current.ami, tuple(add), tuple(sorted(removable)), tuple(copy_add),
                      tuple(copy_remove), frozenset(after), ours_after)


def plan_all(currents: Iterable[Current], who: Who, *, allow_copy: bool) -> dict[str, RegionPlan | ClassError]:
    """A plan per region; a region refused keeps its error and does not stop the others."""
    out: dict[str, RegionPlan | ClassError] = {}
    for current in currents:
        try:
            out[current.region] = plan_region(current, who, allow_copy=allow_copy)
        except ClassError as exc:
            out[current.region] = exc
    return out


# ---------------------------------------------------------------------------------------------- encryption
@dataclass(frozen=True)
class Encryption:
    """How one AMI's snapshots are encrypted: not at all, with an AWS-managed key, or a customer key."""

    encrypted: bool
    key_arn: str | None = None
    aws_managed: bool = False


def needs_copy(found: Encryption | None, class_key_arn: str | None) -> bool:
    """Whether a class region needs its own copy: no AMI there yet, or not on the class key when one is set."""
    if found is None:
        return True
    return class_key_arn is not None and found.key_arn != class_key_arn


def refuse_default_key(image: str, region: str, ami: str, found: Encryption, class_key: str | None) -> None:
    """An AMI on the AWS-managed key with no class key to copy it with: one line with the fix."""
    if found.aws_managed and class_key is None:
        raise ClassError(f"{image}: {ami} in {region} is encrypted with the AWS-managed key aws/ebs, which no "
                         "other account can use", "set kms_key in the class roster to a customer-managed key "
                         "(the factory copies the image with it), or bake with image.kms_key")

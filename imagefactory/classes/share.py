"""`share`, `unshare`: converge an image's class AMIs, per region and concurrently, to the class roster.

For each class region: the class AMI (the build's, or a copy made and encrypted with the class key), the
launch permissions AWS reports, the plan (`plan.plan_region`), the writes, the KMS grants, a re-read to
verify, and a catalog record. The encryption of every region is checked before anything changes; a region
that fails does not stop the others, and re-running converges. `dry_run` reads and plans only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from imagefactory import catalog as catalog_mod
from imagefactory.classes import aws, record
from imagefactory.classes.plan import (
    Current,
    Encryption,
    digest,
    needs_copy,
    plan_region,
    refuse_default_key,
    wanted,
)
from imagefactory.classes.roster import Roster, Who
from imagefactory.cloud.target import Target
from imagefactory.errors import ClassError, FactoryError


class Clients:
    """The target's clients, made once per service and region and shared by the region threads (making a
    boto3 client is slow, CPU-bound, and not safe from several threads at once). `converge` makes one, or
    reuses one it is given (bench/share.py makes them before its timed runs)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.kind = target.kind
        self._made: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str, region: str) -> Any:
        with self._lock:
            if (service, region) not in self._made:
                self._made[(service, region)] = self.target.client(service, region)
            return self._made[(service, region)]


@dataclass
class RegionOutcome:
    region: str
    ami: str | None = None
    status: str = "unchanged"       # unchanged | changed | planned | failed
    added: int = 0
    removed: int = 0
    copied: bool = False
    grants_created: int = 0
    grants_revoked: int = 0
    writes: int = 0
    error: str | None = None
    on_class_key: bool = False      # the build's own AMI is already on the class key (image.kms_key): no copy

    def line(self) -> str:
        if self.status == "failed":
            return f"{self.region}: FAILED: {self.error}"
        what = f"+{self.added} -{self.removed}" + (", copied" if self.copied else "")
        what += f", grants +{self.grants_created} -{self.grants_revoked}" if self.grants_created or \
            self.grants_revoked else ""
        verb = {"unchanged": "no change", "changed": "changed", "planned": "would change"}[self.status]
        return f"{self.region}: {self.ami}: {verb}" + ("" if self.status == "unchanged" else f" ({what})")


@dataclass
class ShareReport:
    image: str
    build: str
    class_name: str
    dry_run: bool
    regions: list[RegionOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(r.status == "failed" for r in self.regions)

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "build": self.build, "class": self.class_name, "dry_run": self.dry_run,
                "regions": [asdict(r) for r in self.regions], "notes": self.notes,
                "changed": any(r.status in ("changed", "planned") for r in self.regions)}

    def text(self) -> str:
        head = f"{self.image} {self.build} -> class {self.class_name}" + (" (dry run)" if self.dry_run else "")
        lines = [head, *(f"  {r.line()}" for r in self.regions)]
        if not any(r.status in ("changed", "planned", "failed") for r in self.regions):
            lines.append("  nothing to change: every region already matches the roster")
        return "\n".join([*lines, *self.notes])


def pick_build(cat: catalog_mod.Catalog, image: str, build_id: str | None) -> catalog_mod.Build:
    entry = cat.image(image)
    build = entry.build(build_id) if build_id else entry.latest_build()
    if build is None:
        known = ", ".join(b.id for b in entry.builds if b.status == "available") or "none"
        raise ClassError(f"image {image} has no build {build_id or '(latest)'}", f"available builds: {known}")
    if build.status != "available":
        raise ClassError(f"build {build.id} of {image} is {build.status}", "share an available build")
    return build


@dataclass(frozen=True)
class _Source:
    """The build's AMIs as AWS reports them (read once, before any change) and how each is encrypted."""

    images: dict[str, dict[str, Any]]
    encryption: dict[str, Encryption]


def _check_encryption(target: Target, image: str, build: catalog_mod.Build, roster: Roster) -> _Source:
    """Before any change: how the build's AMIs are encrypted; refuse aws/ebs without a class key."""
    images, found = {}, {}
    for region, ami in sorted(build.amis.items()):
        img = aws.image(target.client("ec2", region), ami)
        if img is None:
            raise ClassError(f"{image}: build {build.id}'s {ami} is no longer in {region}", "bake again")
        images[region] = img
        found[region] = aws.encryption(target.client("ec2", region), target.client("kms", region), img)
        refuse_default_key(image, region, ami, found[region], roster.key_for(region))
    return _Source(images, found)


def _class_ami(target: Target, region: str, image: str, build: catalog_mod.Build, roster: Roster,
               src: _Source, key: str | None, previous: dict[str, Any] | None,
               dry_run: bool) -> tuple[dict[str, Any] | None, bool]:
    """The AMI the class launches in `region` as AWS reports it, and whether it is the class's copy (None: a
    copy is due, in a dry run)."""
    ec2 = target.client("ec2", region)
    if previous and previous.get("copied"):
        kept = aws.image(ec2, previous["ami"])
        if kept is not None:
            return kept, True
    own = build.amis.get(region)
    if own and not needs_copy(src.encryption.get(region), key):
        return src.images[region], False
    if dry_run:
        return None, True
    source_region = region if own else next(iter(sorted(build.amis)))
    source = src.images[source_region]
    name = f"{source.get('Name') or image}-{roster.name}"
    return aws.copy(ec2, source=source, source_region=source_region, name=name, key=key, class_name=roster.name), True


def _one_region(target: Target, region: str, image: str, build: catalog_mod.Build, roster: Roster, who: Who,
                src: _Source, *, dry_run: bool, caller: Callable[[], str],
                workers: int | None) -> tuple[RegionOutcome, dict | None]:
    out = RegionOutcome(region)
    previous = record.shares_of(build, roster.name).get(region)
    kms = target.client("kms", region) if roster.key_for(region) else None
    key = aws.key_arn(kms, roster.key_for(region)) if kms is not None else None
    img, copied = _class_ami(target, region, image, build, roster, src, key, previous, dry_run)
    out.copied = copied and not (previous or {}).get("copied")
    out.on_class_key = bool(key) and not copied and img is not None
    if img is None:  # dry run, copy due: everyone is added to the copy
        out.ami, out.status, out.added = "(new copy)", "planned", len(wanted(who))
        return out, None
    ec2, ami = target.client("ec2", region), str(img["ImageId"])
    snapshots = aws.snapshot_ids(img)
    ours = frozenset((previous or {}).get("entries", ())) if (previous or {}).get("ami") == ami else frozenset()
    # a copy made just now has no launch or create-volume permissions (CopyImage carries none): nothing to read
    launch_now, copy_now = (frozenset(), frozenset()) if out.copied else aws.at_once(
        [partial(aws.launch_entries, ec2, ami), partial(aws.copy_users, ec2, snapshots, workers)], workers)
    current = Current(region, ami, launch_now, copy_now, ours, record.others_of(build, roster.name, region))
    plan = plan_region(current, who, allow_copy=roster.allow_copy)
    out.ami, out.added, out.removed = ami, len(plan.add) + len(plan.copy_add), len(plan.remove) + len(plan.copy_remove)
    grants = partial(aws.converge_grants, kms, key, roster.name, set(who.accounts), dry_run=dry_run,
                     workers=workers) if key else lambda: (0, 0)
    if dry_run:
        out.grants_created, out.grants_revoked = grants()
    else:  # who shares is known before the first permission is given; the grants (KMS) and the permissions
        by = caller()  # (EC2) do not depend on each other
        (out.grants_created, out.grants_revoked), out.writes = aws.at_once(
            [grants, partial(aws.apply, ec2, plan, snapshots, workers)], workers)
    changed = plan.changes or out.copied or out.grants_created or out.grants_revoked
    if dry_run:
        out.status = "planned" if changed else "unchanged"
        return out, None
    if aws.launch_entries(ec2, ami) != plan.after:
        raise ClassError(f"{ami} in {region}: AWS reports other launch permissions than planned",
                         "re-run share; it converges")
    out.status = "changed" if changed else "unchanged"
    rec = {"class": roster.name, "region": region, "ami": ami, "copied": copied, "accounts": len(who.accounts),
           "organization": who.organization, "ous": list(who.ous), "entries": sorted(plan.ours_after),
           "copy_accounts": len(who.accounts) if roster.allow_copy else 0, "kms_key": key,
           "when": datetime.now(UTC).isoformat(timespec="seconds"), "by": by}
    return out, rec


def _caller(target: Target) -> str:
    return str(target.client("sts", "us-east-1").get_caller_identity()["Arn"])


def converge(target: Target, catalog_path: Any, image: str, roster: Roster, *, build_id: str | None = None,
             dry_run: bool = False, unshare: bool = False, progress: Callable[[str], None] = lambda _l: None,
             workers: int | None = None) -> ShareReport:
    """Share (or with `unshare`, take back) `image`'s build with the class, in every class region at once, and
    within a region its independent calls at once (`workers=1`: one call after the other, for comparison)."""
    target = target if isinstance(target, Clients) else Clients(target)  # type: ignore[assignment]
    cat = catalog_mod.load(catalog_path)
    build = pick_build(cat, image, build_id)
    who = Who() if unshare else roster.who
    aside = ThreadPoolExecutor(max_workers=1)  # who is calling: asked beside the rest, known before a region's
    try:                                       # first permission is given (one call after the other: first)
        return _converge(target, catalog_path, image, roster, build, who, dry_run=dry_run, unshare=unshare,
                         progress=progress, workers=workers,
                         caller=aside.submit(_caller, target).result if workers != 1 else _known(_caller(target)))
    finally:
        aside.shutdown(wait=True)


def _known(value: str) -> Callable[[], str]:
    return lambda: value


def _converge(target: Target, catalog_path: Any, image: str, roster: Roster, build: catalog_mod.Build, who: Who, *,
              dry_run: bool, unshare: bool, progress: Callable[[str], None], workers: int | None,
              caller: Callable[[], str]) -> ShareReport:
    src = _Source({}, {}) if unshare else _check_encryption(target, image, build, roster)
    recorded = set(record.shares_of(build, roster.name))
    dropped = recorded if unshare else recorded - set(roster.regions)  # regions the class no longer uses
    regions = sorted(recorded) if unshare else [*roster.regions, *sorted(dropped)]
    report = ShareReport(image, build.id, roster.name, dry_run)

    def run(region: str) -> tuple[RegionOutcome, dict | None]:
        try:
            if region in dropped:
                return _unshare_region(target, region, build, roster, dry_run=dry_run, workers=workers)
            return _one_region(target, region, image, build, roster, who, src, dry_run=dry_run, caller=caller,
                               workers=workers)
        except FactoryError as exc:
            return RegionOutcome(region, status="failed", error=exc.message), None
        except Exception as exc:  # botocore's many errors: one line for this region, the others go on
            return RegionOutcome(region, status="failed", error=f"{type(exc).__name__}: {exc}"), None

    with ThreadPoolExecutor(max_workers=workers or max(1, min(8, len(regions)))) as pool:
        results = list(pool.map(run, regions))
    report.regions = [r for r, _ in results]
    for outcome in report.regions:
        progress(outcome.line())
    if not dry_run:
        done = [rec for _, rec in results if rec]
        gone = {r.region for r, _rec in results if r.region in dropped and r.status != "failed"}
        catalog_mod.update(catalog_path, lambda c: record.drop(record.put(c, image, build.id, done), image,
                                                               build.id, roster.name, gone))
    kept = [r.region for r in report.regions if r.on_class_key]
    if kept:
        report.notes.append(f"{', '.join(kept)}: the build's AMI is already encrypted with the class key (baked with "
                            "image.kms_key): shared as it is, no copy made")
    if not unshare and roster.key_for(roster.regions[0]) and (who.organization or who.ous):
        report.notes.append("the class key needs this key-policy statement for the organization/OU accounts "
                            "(grants cannot name them): " + aws.key_policy_statement(roster.name, who.organization,
                                                                                      who.ous))
    return report


def _unshare_region(target: Target, region: str, build: catalog_mod.Build, roster: Roster, *,
                    dry_run: bool, workers: int | None = None) -> tuple[RegionOutcome, dict | None]:
    previous = record.shares_of(build, roster.name)[region]
    ec2, ami = target.client("ec2", region), previous["ami"]
    out = RegionOutcome(region, ami)
    img = aws.image(ec2, ami)
    if img is not None:
        snapshots = aws.snapshot_ids(img)
        launch_now, copy_now = aws.at_once([partial(aws.launch_entries, ec2, ami),
                                            partial(aws.copy_users, ec2, snapshots, workers)], workers)
        current = Current(region, ami, launch_now, copy_now, frozenset(previous.get("entries", ())),
                          record.others_of(build, roster.name, region))
        plan = plan_region(current, Who(), allow_copy=False)
        out.removed = len(plan.remove) + len(plan.copy_remove)
        if not dry_run:
            out.writes = aws.apply(ec2, plan, snapshots, workers)
    if previous.get("kms_key"):
        _created, out.grants_revoked = aws.converge_grants(target.client("kms", region), previous["kms_key"],
                                                           roster.name, set(), dry_run=dry_run, workers=workers)
    if previous.get("copied") and img is not None and not dry_run:
        aws.deregister(ec2, ami)
    out.status = ("planned" if dry_run else "changed") if out.removed or out.grants_revoked or \
        previous.get("copied") else "unchanged"
    return out, None


__all__ = ["RegionOutcome", "ShareReport", "converge", "digest", "pick_build"]

"""Sharing an image with a class of 200 accounts and 1 OU in 4 regions, in the sandbox, with 50 ms added
to every API call: wall time one region after the other versus concurrently, and the API calls of a
second, no-change run.

    python bench/share.py [--latency-ms 50] [--accounts 200] [--class-key]

Targets: concurrent at least 3x faster than sequential with 4 regions; the second run makes only reads
(Describe*, List*, Get*). "Sequential" is `converge(workers=1)`: one call after the other (one region after
the other, and in a region one batch, grant, read after the other); "concurrent" is the command as it runs:
the regions at once, and in each its independent calls at once (`classes.aws.IN_REGION_WORKERS`).
`--class-key` gives the class the sandbox's customer-managed key: every region then gets a copy on it, and
every account a KMS grant per region (800 CreateGrant calls for 200 accounts in 4 regions).

The latency is added on the client, before each request is sent (botocore's `before-send` event of the
default session), so it overlaps across threads as a network's would. The build is made by hand (an
unencrypted copy of a seeded Ubuntu image, recorded in a fresh catalog): the figures are the
orchestrator's, not a bake's. Printed, not asserted.

Besides the whole command, the region phase is timed: from the start until `converge` reports its first
region outcome (the encryption check and every region's copy, reads, writes and verification), that is
without the one catalog write at the end, which both modes make alike. Each mode runs twice: "cold", as a
command runs (its boto3 clients made inside the timed run), and "warm", with the clients made before timing
(`Clients`, the cache `converge` itself uses). Every run starts on a fresh emulator and catalog (earlier
runs' copies and records would slow later ones). The emulator's own CPU per call (a Python server: it does
not overlap on 2 cores) stays inside every figure, and so does its state save (a group commit: concurrent
writes share one).
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402

from imagefactory import catalog  # noqa: E402
from imagefactory.classes import roster as rosters  # noqa: E402
from imagefactory.classes.share import Clients, converge  # noqa: E402
from imagefactory.cloud.target import open_target  # noqa: E402
from imagefactory.sandbox.emulator import down  # noqa: E402
from imagefactory.sandbox.org import CLASS_KEY_ALIAS, OU_ARN  # noqa: E402

REGIONS = ("us-west-2", "us-east-1", "us-east-2", "eu-west-1")
READS = ("Describe", "List", "Get")


class Calls:
    """Counts every API call by operation and sleeps `latency` seconds before each is sent."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.counts: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    def __call__(self, request: Any = None, event_name: str = "", **_kwargs: Any) -> None:
        operation = event_name.rpartition(".")[2] or "?"
        with self.lock:
            self.counts[operation] += 1
        time.sleep(self.latency)

    def reset(self) -> collections.Counter[str]:
        with self.lock:
            counts, self.counts = self.counts, collections.Counter()
        return counts


def make_build(target: Any, path: Path) -> None:
    ec2 = target.client("ec2", REGIONS[0])
    base = ec2.describe_images(Owners=["099720109477"])["Images"][0]["ImageId"]
    ami = ec2.copy_image(SourceImageId=base, SourceRegion=REGIONS[0], Name="bench-share")["ImageId"]
    build = catalog.Build(id="bench-1", created="2026-01-01T00:00:00+00:00", status="available", target="sandbox",
                          account=target.account, commit="0" * 40, ref=None, recipe_digest="", amis={REGIONS[0]: ami})
    catalog.update(path, lambda c: catalog.record(c, name="bench", repo="bench", recipe="recipes/bench.yaml",
                                                  recipe_digest="", build=build))


def roster(home: Path, name: str, first: int, accounts: int, key: str | None = None) -> rosters.Roster:
    rows = [{"id": f"{first + i:012d}"} for i in range(accounts)]
    doc = rosters.new_document(title=name, regions=REGIONS, accounts=rows, start=date(2026, 1, 1),
                               end=date(2026, 6, 1), kms_key=key)
    doc["ous"] = [OU_ARN]
    return rosters.write_new(home, name, doc, force=True)


def warm(target: Any) -> Clients:
    """Every client a converge uses, made now (outside the timed run); sts is asked in us-east-1."""
    clients = Clients(target)
    for region in REGIONS:
        clients.client("ec2", region)
        clients.client("kms", region)
    clients.client("sts", "us-east-1")
    return clients


def measure(args: argparse.Namespace, calls: Calls, clients: str, label: str, workers: int | None,
            keep: bool = False) -> tuple[float, float, Any]:
    """One timed converge on a fresh emulator and catalog (earlier runs' copies and records would slow the
    later ones): (whole seconds, region-phase seconds, the run's context for a second run when `keep`)."""
    tmp = tempfile.TemporaryDirectory(prefix="bench-share-")
    home, state = Path(tmp.name), Path(tmp.name) / ".sandbox" / "emulator"
    try:
        target = open_target("sandbox", state)
        path = home / "catalog.yaml"
        make_build(target, path)
        r = roster(home, "bench-class", 300000000000, args.accounts, CLASS_KEY_ALIAS if args.class_key else None)
        given = target if clients == "cold" else warm(target)
        reported: list[float] = []
        calls.reset()
        started = time.monotonic()
        report = converge(given, path, "bench", r, workers=workers,
                          progress=lambda _line: reported.append(time.monotonic()))
        whole, phase = time.monotonic() - started, reported[0] - started
        assert not report.failed, report.text()
        key = ", class key" if args.class_key else ""
        print(f"{clients} {label:>10}: {whole:6.2f} s (region phase {phase:5.2f} s), {sum(calls.reset().values())} "
              f"API calls ({len(REGIONS)} regions, {args.accounts} accounts + 1 OU{key}, {args.latency_ms:g} ms each)")
    except BaseException:
        down(state)
        tmp.cleanup()
        raise
    if keep:
        return whole, phase, (tmp, state, target, path, r)
    down(state)
    tmp.cleanup()
    return whole, phase, None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--class-key", action="store_true", help="share with the class key (copies and grants)")
    args = parser.parse_args()
    calls = Calls(args.latency_ms / 1000)
    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("before-send", calls)  # type: ignore[union-attr]
    kept = None
    for clients in ("cold", "warm"):
        seq = measure(args, calls, clients, "sequential", 1)
        conc = measure(args, calls, clients, "concurrent", None, keep=clients == "cold")
        kept = kept or conc[2]
        print(f"{clients}   speed-up: {seq[0] / conc[0]:.1f}x whole command, {seq[1] / conc[1]:.1f}x region phase "
              "(target >= 3x)")
    assert kept is not None
    tmp, state, target, path, r = kept
    try:
        report = converge(target, path, "bench", r)
        again = calls.reset()
        writes = {op: n for op, n in again.items() if not op.startswith(READS)}
        print(f"second run: {sum(again.values())} API calls, {sum(writes.values())} writes {writes or ''}"
              f"({'only reads' if not writes else 'NOT only reads'}); "
              f"{'no change' if 'nothing to change' in report.text() else 'CHANGED'}")
    finally:
        down(state)
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

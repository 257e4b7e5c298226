"""Sharing an image with a class of 200 accounts and 1 OU in 4 regions, in the sandbox, with 50 ms added
to every API call: wall time one region after the other versus concurrently, and the API calls of a
second, no-change run.

    python bench/share.py [--latency-ms 50] [--accounts 200]

Targets: concurrent at least 3x faster than sequential with 4 regions; the second run makes only reads
(Describe*, List*, Get*). The latency is added on the client, before each request is sent (botocore's
`before-send` event of the default session), so it overlaps across threads as a network's would. The
build is made by hand (an unencrypted copy of a seeded Ubuntu image, recorded in a fresh catalog): the
figures are the orchestrator's, not a bake's. Printed, not asserted.

Besides the whole command, the region phase is timed: from the start until `converge` reports its first
region outcome (the encryption check and every region's copy, reads, writes and verification), that is
without the one catalog write at the end, which both modes make alike. Each mode runs twice: "cold", as a
command runs (its boto3 clients made inside the timed run), and "warm", with the clients made before timing
(`Clients`, the cache `converge` itself uses). Both modes are treated alike in each pair; the emulator's
own CPU per call (a Python server: it does not overlap on 2 cores) stays inside every figure.
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
from imagefactory.sandbox.org import OU_ARN  # noqa: E402

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


def roster(home: Path, name: str, first: int, accounts: int) -> rosters.Roster:
    rows = [{"id": f"{first + i:012d}"} for i in range(accounts)]
    doc = rosters.new_document(title=name, regions=REGIONS, accounts=rows, start=date(2026, 1, 1),
                               end=date(2026, 6, 1))
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--accounts", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-share-") as tmp:
        home, state = Path(tmp), Path(tmp) / ".sandbox" / "emulator"
        target = open_target("sandbox", state)
        path = home / "catalog.yaml"
        make_build(target, path)
        calls = Calls(args.latency_ms / 1000)
        boto3.setup_default_session()
        boto3.DEFAULT_SESSION.events.register("before-send", calls)  # type: ignore[union-attr]
        try:
            timings = {}
            first = 300000000000
            for clients in ("cold", "warm"):
                for label, workers in (("sequential", 1), ("concurrent", None)):
                    r = roster(home, f"{clients}-{label}", first, args.accounts)
                    first += 100000000000
                    given = target if clients == "cold" else warm(target)
                    reported: list[float] = []
                    calls.reset()
                    started = time.monotonic()
                    report = converge(given, path, "bench", r, workers=workers,
                                      progress=lambda _line, seen=reported: seen.append(time.monotonic()))
                    timings[clients, label] = time.monotonic() - started
                    timings[clients, label, "regions"] = reported[0] - started
                    assert not report.failed, report.text()
                    print(f"{clients} {label:>10}: {timings[clients, label]:6.2f} s (region phase "
                          f"{timings[clients, label, 'regions']:5.2f} s), {sum(calls.reset().values())} "
                          f"API calls ({len(REGIONS)} regions, {args.accounts} accounts + 1 OU, "
                          f"{args.latency_ms:g} ms each)")
                whole = timings[clients, "sequential"] / timings[clients, "concurrent"]
                phase = timings[clients, "sequential", "regions"] / timings[clients, "concurrent", "regions"]
                print(f"{clients}   speed-up: {whole:.1f}x whole command, {phase:.1f}x region phase (target >= 3x)")
            report = converge(target, path, "bench", r)
            again = calls.reset()
            writes = {op: n for op, n in again.items() if not op.startswith(READS)}
            print(f"second run: {sum(again.values())} API calls, {sum(writes.values())} writes {writes or ''}"
                  f"({'only reads' if not writes else 'NOT only reads'}); "
                  f"{'no change' if 'nothing to change' in report.text() else 'CHANGED'}")
        finally:
            down(state)
    return 0


if __name__ == "__main__":
    sys.exit(main())

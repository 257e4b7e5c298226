"""Put the recipe's data into the image: downloads checked by sha256, and git repositories at a commit.

    python3 if_data.py CONFIG REPO_DIR USER RESULT_JSON

config.json's `data` entries, in order: {url, sha256, dest, unpack} is downloaded with progress (every
10 % or 5 s), its sha256 compared with the recipe's (a mismatch fails the bake naming the entry and both
digests), then written to `dest`, or with `unpack` a .zip/.tar(.gz/.bz2/.xz) is unpacked into the
folder `dest` (members leaving it are refused); {git, commit, dest} is cloned and checked out at the
commit. A relative `dest` is under the repository, `/data/...` is itself. Everything written is owned by
USER. Writes [{"dest", "source", "bytes", "sha256"|"commit", "seconds"}] to RESULT_JSON. Runs on the
image's system python3 (3.10 or newer), as root.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile

CHUNK = 1 << 20
TIMEOUT = 60


class DataError(Exception):
    pass


def target(repo: str, dest: str) -> str:
    path = os.path.normpath(dest if dest.startswith("/data/") else os.path.join(repo, dest))
    root = "/data" if dest.startswith("/data/") else os.path.normpath(repo)
    if os.path.commonpath([path, root]) != root or path == root:
        raise DataError(f"dest {dest!r} leaves {root}")
    return path


def download(url: str, out: str, label: str) -> tuple:
    digest, done, started, shown = hashlib.sha256(), 0, time.monotonic(), 0.0
    with urllib.request.urlopen(url, timeout=TIMEOUT) as resp, open(out, "wb") as fh:
        total = int(resp.headers.get("Content-Length") or 0)
        step = total // 10 if total else 0
        mark = step
        while chunk := resp.read(CHUNK):
            fh.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            now = time.monotonic()
            if (step and done >= mark) or now - shown >= 5:
                pct = f" ({100 * done // total}%)" if total else ""
                print(f"data: {label}: {done / 1e6:.1f} MB{pct}", flush=True)
                shown, mark = now, mark + step
    return done, digest.hexdigest(), time.monotonic() - started


def unpack(archive: str, dest: str, label: str) -> None:
    """Unpack into the folder `dest`, refusing members that leave it, links and devices (`label` names it)."""
    root = os.path.realpath(dest)

    def inside(name: str) -> bool:
        return os.path.commonpath([os.path.realpath(os.path.join(root, name)), root]) == root

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            bad = next((n for n in zf.namelist() if not inside(n)), None)
            if bad is not None:
                raise DataError(f"archive member {bad!r} leaves {label}")
            os.makedirs(root, exist_ok=True)
            zf.extractall(root)
        return
    try:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                if not inside(member.name) or member.issym() or member.islnk() or member.isdev():
                    raise DataError(f"archive member {member.name!r} leaves {label} or is a link or device")
            os.makedirs(root, exist_ok=True)
            tf.extractall(root)
    except tarfile.ReadError:
        raise DataError("unpack is set but the file is neither a zip nor a tar archive") from None


def fetch(entry: dict, repo: str) -> dict:
    dest = target(repo, entry["dest"])
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if entry.get("git"):
        started = time.monotonic()
        subprocess.run(["git", "clone", "--quiet", "--", entry["git"], dest], check=True)
        subprocess.run(["git", "-C", dest, "checkout", "--quiet", "--detach", entry["commit"]], check=True)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(dest) for f in fs)
        return {"dest": entry["dest"], "source": entry["git"], "commit": entry["commit"], "bytes": size,
                "seconds": round(time.monotonic() - started, 2)}
    with tempfile.TemporaryDirectory(prefix="if-data-") as tmp:
        part = os.path.join(tmp, "download")
        size, digest, seconds = download(entry["url"], part, entry["dest"])
        if digest != entry["sha256"]:
            raise DataError(f"sha256 mismatch: the recipe says {entry['sha256']}, the download is {digest}")
        if entry.get("unpack"):
            unpack(part, dest, entry["dest"])
        else:
            shutil.move(part, dest)
    return {"dest": entry["dest"], "source": entry["url"], "sha256": digest, "bytes": size,
            "seconds": round(seconds, 2)}


def main(argv: list) -> int:
    with open(argv[1], encoding="utf-8") as fh:
        entries = json.load(fh).get("data", [])
    repo, user = argv[2], argv[3]
    results = []
    if not entries:
        print("data: the recipe has no data entries")
    for number, entry in enumerate(entries):
        label = entry.get("url") or entry.get("git")
        print(f"data: [{number}] {label} -> {entry['dest']}", flush=True)
        try:
            results.append(fetch(entry, repo))
        except (DataError, OSError, subprocess.CalledProcessError, zipfile.BadZipFile) as exc:
            print(f"data: entry data[{number}] ({label} -> {entry['dest']}) failed: {exc}", flush=True)
            return 1
        print(f"data: [{number}] {results[-1]['bytes']} bytes in {results[-1]['seconds']} s", flush=True)
        path = target(repo, entry["dest"])
        subprocess.run(["chown", "-R", f"{user}:", path], check=True)
        if path.startswith("/data/"):
            subprocess.run(["chown", f"{user}:", "/data"], check=True)
    with open(argv[4], "w", encoding="utf-8") as fh:
        json.dump(results, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

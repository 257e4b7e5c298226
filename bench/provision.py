"""Benchmark: uv vs pip installing the same stack into fresh venvs inside a sandbox rootfs copy.

    python bench/provision.py [--cache DIR] [--packages P ...]

Inside one BuildRoot (the Debian bookworm base, this machine's CAs trusted, Python 3.11) it installs
jupyterlab, numpy, pandas, matplotlib and scikit-learn with no cache three times, each into a new venv:
pip (which compiles bytecode), uv (which by default does not), and uv --compile-bytecode (like for like
with pip). It prints each install time, the pip/uv ratios, each env's size, and the packed (tar + zstd)
and unpacked size of the rootfs holding all three. Needs root, debootstrap and PyPI.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imagefactory.home import rootfs_cache_dir
from imagefactory.sandbox.archive import PackInfo, pack, tree_bytes
from imagefactory.sandbox.buildroot import BuildRoot
from imagefactory.sandbox.host import CLEAN_ENV, sandbox_supported
from imagefactory.sandbox.teardown import remove_tree

PACKAGES = ("jupyterlab", "numpy", "pandas", "matplotlib", "scikit-learn")
DEFAULT_CACHE = rootfs_cache_dir()
TOOLS = "/opt/bench/tools"
CA = "/etc/ssl/certs/ca-certificates.crt"
ENV = dict(CLEAN_ENV, HOME="/root", SSL_CERT_FILE=CA, REQUESTS_CA_BUNDLE=CA, PIP_CERT=CA,
           PIP_DISABLE_PIP_VERSION_CHECK="1")


def inside(root: BuildRoot, argv: list[str]) -> float:
    """Run argv in the rootfs; return wall seconds; stop with its output on failure."""
    started = time.monotonic()
    done = root.run(argv, env=ENV)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds


def env_mb(root: BuildRoot, prefix: str) -> float:
    return tree_bytes(root.root / prefix.lstrip("/")) / 1e6


def installs(root: BuildRoot, packages: list[str]) -> dict[str, dict[str, float]]:
    inside(root, ["python3", "-m", "venv", TOOLS])
    inside(root, [f"{TOOLS}/bin/pip", "install", "--quiet", "--no-cache-dir", "uv"])
    uv = f"{TOOLS}/bin/uv"
    results = {}
    inside(root, ["python3", "-m", "venv", "/opt/bench/pip"])
    pip = inside(root, ["/opt/bench/pip/bin/pip", "install", "--quiet", "--no-cache-dir", *packages])
    results["pip"] = {"seconds": pip, "env_mb": env_mb(root, "/opt/bench/pip")}
    for name, extra in (("uv", []), ("uv --compile-bytecode", ["--compile-bytecode"])):
        prefix = "/opt/bench/" + name.replace(" --", "-")
        inside(root, [uv, "venv", "--quiet", "--python", "/usr/bin/python3", prefix])
        seconds = inside(root, [uv, "pip", "install", "--quiet", "--no-cache", *extra, "--python",
                                f"{prefix}/bin/python", *packages])
        results[name] = {"seconds": seconds, "env_mb": env_mb(root, prefix)}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="base rootfs cache folder")
    parser.add_argument("--packages", nargs="+", default=list(PACKAGES), help="what to install")
    args = parser.parse_args()
    ok, why = sandbox_supported()
    if not ok:
        raise SystemExit(f"cannot run the benchmark: {why}")
    with tempfile.TemporaryDirectory(prefix="if-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "key")], check=True)
        with BuildRoot(args.cache, work / "build", login_user="bench",
                              authorized_key=(work / "key.pub").read_text()) as root:
            results = installs(root, args.packages)
        started = time.monotonic()
        info = pack(root.root, work / "image.tar.zst")
        pack_seconds = time.monotonic() - started
        remove_tree(root.root)
    report(args.packages, results, info, pack_seconds)
    return 0


def report(packages: list[str], results: dict[str, dict[str, float]], info: PackInfo,
           pack_seconds: float) -> None:
    print(f"packages: {' '.join(packages)} (no cache, fresh venv each, Debian bookworm rootfs, Python 3.11)")
    for name, r in results.items():
        print(f"  {name:<22} {r['seconds']:7.1f} s   env {r['env_mb']:6.0f} MB")
    pip = results["pip"]["seconds"]
    for name in ("uv", "uv --compile-bytecode"):
        print(f"  pip / {name:<16} {pip / results[name]['seconds']:7.1f} x")
    print(f"rootfs with all three envs: {info.unpacked_bytes / 1e6:.0f} MB unpacked, "
          f"{info.packed_bytes / 1e6:.0f} MB packed (tar + zstd -T0 -3, {pack_seconds:.1f} s)")
    print(json.dumps({"results": results, "packed_bytes": info.packed_bytes,
                      "unpacked_bytes": info.unpacked_bytes, "pack_seconds": round(pack_seconds, 1)}))


if __name__ == "__main__":
    sys.exit(main())

"""Write /etc/imagefactory/manifest.json: what this image holds and how it was made.

    python3 if_manifest.py CONFIG REPO_DIR OUT

Fields: manifest_version, build_id, target, recipe {name, digest}, repo {url, ref, commit, head},
python {requested, version, executable}, kernel {name, display_name, prefix}, package_tool and
packages [{name, version}] of the kernel env (`uv pip list --format json`, or `micromamba list --json`
for a conda kernel env), jupyterlab (version), jupyter {port, token_file}, autostop_minutes,
login_user, base_os, versions {packer, factory, uv}, build {mode: full | incremental, parent},
environment_inputs (what the environment install read, from the config), created (UTC, ISO 8601),
and what the earlier stages measured (IF_DIR/results/*.json): imports {ok, failed, warned} (the code's imports, 80-smoke),
system {programs, libraries, missing}, notebooks [{path, ok, seconds, cell, error}], data [{dest,
source, bytes, …}] (55-data); a stage that wrote nothing gives null; disk_used_bytes (`du -sx /`,
measured before 90-cleanup: what the snapshot stores, give or take the caches cleaned there). The
programs it asks (uv, the kernel's and the server's Python, git, du) run at the same time, in threads.
Written atomically, mode 0644. Runs on the image's system python3 (3.10 or newer).
"""

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

PREFIX = "/opt/imagefactory"
KERNEL = f"{PREFIX}/kernel"
SERVER = f"{PREFIX}/server"
MICROMAMBA = f"{PREFIX}/bin/micromamba"
UV = f"{PREFIX}/tools/bin/uv"


def output(argv: list) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def packages(conda: bool) -> tuple:
    if conda:
        listed = json.loads(output([MICROMAMBA, "list", "-p", KERNEL, "--json"]))
        return "micromamba list", [{"name": p["name"], "version": p["version"],
                                    "channel": p.get("channel", "")} for p in listed]
    listed = json.loads(output([UV, "pip", "list", "--format", "json", "--python", f"{KERNEL}/bin/python"]))
    return "uv pip list", [{"name": p["name"], "version": p["version"]} for p in listed]


def os_name() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as fh:
            pairs = dict(line.rstrip("\n").split("=", 1) for line in fh if "=" in line)
    except OSError:
        return "unknown"
    return pairs.get("PRETTY_NAME", "unknown").strip('"')


def repo_head(repo_dir: str) -> str | None:
    if not os.path.isdir(os.path.join(repo_dir, ".git")):
        return None
    return output(["git", "-c", f"safe.directory={repo_dir}", "-C", repo_dir, "rev-parse", "HEAD"])


def results() -> dict:
    """What 55-data and 80-smoke recorded in IF_DIR/results/ (null when a file is missing or empty)."""
    folder = os.path.join(os.environ.get("IF_DIR", "/tmp/imagefactory"), "results")
    out = {}
    for key in ("imports", "system", "notebooks", "data"):
        path = os.path.join(folder, f"{key}.json")
        try:
            with open(path, encoding="utf-8") as fh:
                out[key] = json.load(fh)
        except (OSError, ValueError):
            out[key] = None
    return out


def disk_used() -> int | None:
    """Bytes the root filesystem's files take (`du -sx /`), what the image's snapshot stores."""
    try:
        done = subprocess.run(["du", "-sx", "--block-size=1", "/"], capture_output=True, text=True, timeout=300)
        return int(done.stdout.split()[0])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def jupyterlab_version() -> str:
    """JupyterLab's version from its package metadata in the server env (what `jupyter-lab --version`
    prints, without importing the application)."""
    return output([f"{SERVER}/bin/python", "-c", "import importlib.metadata as m; print(m.version('jupyterlab'))"])


def manifest(config: dict, repo_dir: str) -> dict:
    with ThreadPoolExecutor(max_workers=6) as pool:
        asked = {"packages": pool.submit(packages, bool(config["conda"])),
                 "python": pool.submit(output, [f"{KERNEL}/bin/python", "-c",
                                                "import platform; print(platform.python_version())"]),
                 "jupyterlab": pool.submit(jupyterlab_version),
                 "uv": pool.submit(output, [UV, "--version"]),
                 "head": pool.submit(repo_head, repo_dir),
                 "disk": pool.submit(disk_used)}
        found = {key: future.result() for key, future in asked.items()}
    tool, pkgs = found["packages"]
    version = found["python"]
    return {
        "manifest_version": 1,
        "build_id": config["build_id"],
        "target": config["target"],
        "recipe": config["recipe"],
        "repo": {"url": config["source"]["repo"], "ref": config["source"]["ref"],
                 "commit": config["source"]["commit"], "head": found["head"], "path": repo_dir},
        "python": {"requested": config["python"]["version"], "version": version,
                   "executable": f"{KERNEL}/bin/python"},
        "kernel": {**config["kernel"], "prefix": KERNEL},
        "package_tool": tool,
        "packages": pkgs,
        "jupyterlab": found["jupyterlab"],
        "jupyter": {"port": config["jupyter"]["port"], "token_file": config["jupyter"]["token_file"]},
        "autostop_minutes": config["autostop_minutes"],
        "login_user": config["login_user"],
        "base_os": os_name(),
        "versions": {**config["versions"], "uv": found["uv"].split()[-1]},
        "build": config.get("build") or {"mode": "full", "parent": None},
        "environment_inputs": config.get("environment_inputs"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "disk_used_bytes": found["disk"],
        **results(),
    }


def write(path: str, data: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main(argv: list) -> int:
    if len(argv) != 4:
        raise SystemExit("usage: if_manifest.py CONFIG REPO_DIR OUT")
    with open(argv[1], encoding="utf-8") as fh:
        config = json.load(fh)
    data = manifest(config, argv[2])
    write(argv[3], data)
    print(f"manifest: {argv[3]}: commit {data['repo']['commit']}, Python {data['python']['version']}, "
          f"JupyterLab {data['jupyterlab']}, {len(data['packages'])} packages ({data['package_tool']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Smoke test, part 1: the kernel env imports the recipe's top-level packages.

    KERNEL/bin/python if_smoke_imports.py CONFIG REPO_DIR

The packages are config.json's `smoke.required` (the distributions the recipe's pip requirement files,
conda pip sections and Pipfile name, as the factory parsed them), `smoke.if_installed` (conda package
names) where they installed a Python distribution, plus the repo itself when it was installed as a
package. Each distribution name becomes import names by, in
order: a table of well-known differences (scikit-learn -> sklearn), the installed distribution's
top_level.txt, its RECORD, and finally the name with dashes as underscores. Exits non-zero if any
import fails. Runs on the kernel's Python, which may be old (3.7+), so it uses plain syntax and reads
*.dist-info / *.egg-info folders itself instead of importlib.metadata.
"""

import importlib
import json
import os
import re
import sys

KNOWN = {
    "scikit-learn": ["sklearn"], "scikit-image": ["skimage"], "pyyaml": ["yaml"],
    "beautifulsoup4": ["bs4"], "python-dateutil": ["dateutil"], "pillow": ["PIL"],
    "opencv-python": ["cv2"], "opencv-python-headless": ["cv2"], "opencv-contrib-python": ["cv2"],
    "pytorch": ["torch"], "tensorflow-cpu": ["tensorflow"], "protobuf": ["google.protobuf"],
    "mysqlclient": ["MySQLdb"], "psycopg2-binary": ["psycopg2"],
    "python-dotenv": ["dotenv"], "attrs": ["attr", "attrs"], "pyzmq": ["zmq"], "msgpack-python": ["msgpack"],
    "ipython": ["IPython"], "gitpython": ["git"], "pygithub": ["github"], "pyjwt": ["jwt"],
    "python-louvain": ["community"], "pytables": ["tables"], "tables": ["tables"], "faiss-cpu": ["faiss"],
    "google-cloud-storage": ["google.cloud.storage"], "pyopenssl": ["OpenSSL"], "pycryptodome": ["Crypto"],
    "setuptools-scm": ["setuptools_scm"], "dnspython": ["dns"],
    "typing-extensions": ["typing_extensions"], "py-opencv": ["cv2"], "gdal": ["osgeo"],
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict:
    """canonical distribution name -> its metadata folder, for every dist on sys.path."""
    found = {}
    for entry in sys.path:
        if not os.path.isdir(entry):
            continue
        for item in os.listdir(entry):
            if item.endswith((".dist-info", ".egg-info")):
                name = item.rsplit(".", 1)[0].split("-")[0]
                found.setdefault(canonical(name), os.path.join(entry, item))
    return found


def read_lines(folder: str, name: str) -> list:
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [line.strip() for line in fh if line.strip()]


def from_record(folder: str) -> list:
    tops = set()
    for row in read_lines(folder, "RECORD"):
        path = row.split(",")[0]
        head = path.split("/")[0]
        if head.endswith((".dist-info", ".data")) or head in ("..", "__pycache__") or head.startswith("_"):
            continue
        if "/" in path and path.endswith("/__init__.py"):
            tops.add(head)
        elif "/" not in path and path.endswith(".py"):
            tops.add(head[:-3])
    return sorted(tops)


def import_names(dist: str, dists: dict) -> list:
    key = canonical(dist)
    if key in KNOWN:
        return KNOWN[key]
    folder = dists.get(key)
    if folder:
        tops = [t for t in read_lines(folder, "top_level.txt") if not t.startswith("_")]
        tops = tops or from_record(folder)
        if tops:
            return [t.replace("/", ".") for t in tops]
    return [key.replace("-", "_")]


def repo_dists(repo_dir: str, dists: dict) -> list:
    """Distributions installed from the repo folder (PEP 610 direct_url.json naming it)."""
    names = []
    for key, folder in dists.items():
        url = ""
        if os.path.isfile(os.path.join(folder, "direct_url.json")):
            with open(os.path.join(folder, "direct_url.json"), encoding="utf-8") as fh:
                url = json.load(fh).get("url", "")
        if url.rstrip("/") == "file://" + repo_dir.rstrip("/"):
            names.append(key)
    return names


def wanted(config: dict, repo_dir: str, dists: dict) -> list:
    smoke = config.get("smoke") or {}
    names = list(smoke.get("required", []))
    names += [n for n in smoke.get("if_installed", []) if canonical(n) in dists or canonical(n) in KNOWN]
    if config.get("install_repo"):
        names += repo_dists(repo_dir, dists)
    unique = []
    for name in names:
        if canonical(name) not in [canonical(u) for u in unique]:
            unique.append(name)
    return unique


def main(argv: list) -> int:
    with open(argv[1], encoding="utf-8") as fh:
        config = json.load(fh)
    dists = installed()
    failed = 0
    for dist in wanted(config, argv[2], dists):
        for module in import_names(dist, dists):
            try:
                importlib.import_module(module)
            except Exception as exc:  # any import failure is a smoke failure; report and go on
                failed += 1
                print(f"smoke: import {module} (from {dist}) FAILED: {type(exc).__name__}: {exc}")
            else:
                print(f"smoke: import {module} (from {dist}) ok")
    if failed:
        print(f"smoke: {failed} import(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Smoke test, part 1: the kernel env imports the recipe's top-level packages, then the code's imports.

    KERNEL/bin/python if_smoke_imports.py CONFIG REPO_DIR [RESULT_JSON]

The packages are config.json's `smoke.required` (the distributions the recipe's pip requirement files,
conda pip sections and Pipfile name, as the factory parsed them), `smoke.if_installed` (conda package
names) where they installed a Python distribution, plus the repo itself when it was installed as a
package. Each distribution name becomes import names by, in
order: a table of well-known differences (scikit-learn -> sklearn), the installed distribution's
top_level.txt, its RECORD, and finally the name with dashes as underscores. Exits non-zero if any
import fails.

Then every module in config.json's `smoke.modules` (what the factory's scan found the repository's code
importing, standard library and third-party; its own local modules are not imported, since importing a
script runs it) is imported, each within MODULE_TIMEOUT seconds; a failure of one marked `fail` (by the
recipe's `smoke.fail_on_import`) fails the smoke test, the others are warnings. RESULT_JSON receives
{"ok": N, "failed": [{"module", "kind", "error", "fatal"}], "warned": N}. Runs on the kernel's
Python, which may be old (3.7+), so it uses plain syntax and reads
*.dist-info / *.egg-info folders itself instead of importlib.metadata.
"""

import importlib
import json
import os
import re
import signal
import sys

MODULE_TIMEOUT = 120

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


class Timeout(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise Timeout(f"import took longer than {MODULE_TIMEOUT} s")


def code_imports(config: dict) -> tuple:
    """Import each of `smoke.modules`; (fatal failures, the result record)."""
    modules = (config.get("smoke") or {}).get("modules", [])
    ok, failed = 0, []
    signal.signal(signal.SIGALRM, _alarm)
    for item in modules:
        signal.alarm(MODULE_TIMEOUT)
        try:
            importlib.import_module(item["module"])
        except BaseException as exc:  # an import may raise anything, SystemExit included
            if isinstance(exc, KeyboardInterrupt):
                raise
            failed.append({"module": item["module"], "kind": item["kind"],
                           "error": f"{type(exc).__name__}: {exc}"[:300], "fatal": bool(item["fail"])})
            word = "FAILED" if item["fail"] else "failed (warning)"
            print(f"smoke: code import {item['module']} ({item['kind']}) {word}: {failed[-1]['error']}")
        else:
            ok += 1
        finally:
            signal.alarm(0)
    fatal = sum(1 for f in failed if f["fatal"])
    print(f"smoke: the code's imports: {ok} ok, {len(failed)} failed ({fatal} fail the bake)")
    return fatal, {"ok": ok, "failed": failed, "warned": len(failed) - fatal}


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
    fatal, record = code_imports(config)
    if len(argv) > 3:
        with open(argv[3], "w", encoding="utf-8") as fh:
            json.dump(record, fh)
    return 1 if failed or fatal else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

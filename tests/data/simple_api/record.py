"""Record trimmed PEP 691 answers from the real index for the recipe tests (run by hand, once).

    python tests/data/simple_api/record.py numpy==1.18.1 pandas==1.0.1 ...

Each answer keeps the real filenames, requires-python and yanked flags of the pinned version's files only
(URLs and hashes are kept as given; nothing else is changed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import requests
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

HERE = Path(__file__).parent
INDEX = "https://pypi.org/simple"


def version_of(filename: str) -> Version | None:
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except ValueError:
        return None


def record(pin: str) -> None:
    name, _, version = pin.partition("==")
    project = canonicalize_name(name)
    resp = requests.get(f"{INDEX}/{project}/", timeout=(5, 30),
                        headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    resp.raise_for_status()
    data = resp.json()
    keep = [f for f in data["files"] if version_of(f["filename"]) == Version(version)]
    out = {"meta": data["meta"], "name": data["name"],
           "files": [{k: f.get(k) for k in ("filename", "url", "hashes", "requires-python", "yanked")}
                     for f in keep]}
    path = HERE / f"{project}.json"
    if path.exists():
        old = json.loads(path.read_text())
        names = {f["filename"] for f in out["files"]}
        out["files"] += [f for f in old["files"] if f["filename"] not in names]
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"{project}: {len(keep)} files of {version}")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        record(arg)

"""Smoke test, part 3: the programs and shared libraries the recipe's system packages are for exist.

    python3 if_smoke_system.py CONFIG RESULT_JSON

config.json's `smoke.programs` (found on PATH, e.g. Graphviz's `dot`) and `smoke.libraries` (found in
the dynamic linker's cache, `ldconfig -p`, e.g. `libGL.so.1`; a name without a version such as
`libgdal.so` matches any version of it) come from the factory's system-package table for the recipe's
`apt` packages. Writes {"programs": {name: path}, "libraries": {name: path}, "missing": [name]} and exits
non-zero if any is missing. Runs on the image's system python3 (3.10 or newer).
"""

import json
import shutil
import subprocess
import sys

PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"


def linker_cache() -> dict:
    """soname -> path, from `ldconfig -p`."""
    out = subprocess.run(["ldconfig", "-p"], check=True, capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines()[1:]:
        name, _, path = line.strip().partition(" => ")
        if path:
            found.setdefault(name.split(" (")[0], path)
    return found


def find_library(name: str, cache: dict) -> str | None:
    if name in cache:
        return cache[name]
    return next((path for so, path in sorted(cache.items()) if so.startswith(name + ".")), None)


def main(argv: list) -> int:
    with open(argv[1], encoding="utf-8") as fh:
        smoke = json.load(fh).get("smoke") or {}
    cache = linker_cache()
    record = {"programs": {}, "libraries": {}, "missing": []}
    for program in smoke.get("programs", []):
        path = shutil.which(program, path=PATH)
        record["programs"][program] = path
        print(f"smoke: program {program}: {path or 'MISSING'}")
        if not path:
            record["missing"].append(program)
    for library in smoke.get("libraries", []):
        path = find_library(library, cache)
        record["libraries"][library] = path
        print(f"smoke: library {library}: {path or 'MISSING'}")
        if not path:
            record["missing"].append(library)
    with open(argv[2], "w", encoding="utf-8") as fh:
        json.dump(record, fh)
    if record["missing"]:
        print(f"smoke: missing from the image: {', '.join(record['missing'])}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

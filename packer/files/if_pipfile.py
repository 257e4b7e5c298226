"""Turn a Pipfile (or its Pipfile.lock, when one sits beside it), or a project's lock file (uv.lock,
poetry.lock, pdm.lock), into a pip requirements file.

    python if_pipfile.py PATH/TO/Pipfile > requirements.txt
    python if_pipfile.py PATH/TO/uv.lock > requirements.txt

uv.lock is exported by uv itself (`uv export --frozen --no-emit-project --no-dev`: markers kept, the
project left to the repo's own install); poetry.lock and pdm.lock give their main (default) packages at the
locked versions, with their markers. Only the default packages are taken, not dev-packages. Pins come
from Pipfile.lock when present, else the Pipfile's own specifiers. Git, path and file entries become
direct references; extra package sources become --extra-index-url lines. Runs on the tool venv's
python (3.10 or newer, with tomli).
"""

import json
import os
import subprocess
import sys

LOCKS = ("uv.lock", "poetry.lock", "pdm.lock")
PYPI_HOSTS = ("https://pypi.org/simple", "https://pypi.python.org/simple")


def load_toml(path: str) -> dict:
    try:
        import tomllib as toml
    except ImportError:  # Python 3.10: the tool venv carries tomli
        import tomli as toml
    with open(path, "rb") as fh:
        return toml.load(fh)


def requirement(name: str, spec: object, base: str) -> str:
    """One requirements line for a Pipfile/lock entry; `base` resolves relative paths."""
    if isinstance(spec, str):
        return name if spec.strip() in ("", "*") else f"{name}{spec}"
    if not isinstance(spec, dict):
        raise SystemExit(f"if_pipfile: cannot read the entry for {name!r}")
    extras = "[{}]".format(",".join(spec["extras"])) if spec.get("extras") else ""
    markers = f" ; {spec['markers']}" if spec.get("markers") else ""
    if "git" in spec:
        ref = f"@{spec['ref']}" if spec.get("ref") else ""
        return f"{name}{extras} @ git+{spec['git']}{ref}{markers}"
    if "path" in spec:
        path = os.path.normpath(os.path.join(base, spec["path"]))
        return f"-e {path}" if spec.get("editable") else f"{path}{markers}"
    if "file" in spec:
        return f"{name}{extras} @ {spec['file']}{markers}"
    version = spec.get("version", "*")
    version = "" if version == "*" else version
    return f"{name}{extras}{version}{markers}"


def sources_lines(sources: list) -> list:
    urls = [s.get("url", "") for s in sources if isinstance(s, dict)]
    return [f"--extra-index-url {u}" for u in urls if u and u.rstrip("/") not in PYPI_HOSTS]


def locked(lock: str) -> list:
    """The requirements of a project lock file, by its name."""
    name = os.path.basename(lock)
    if name == "uv.lock":
        out = subprocess.run(["uv", "export", "--frozen", "--no-hashes", "--no-emit-project", "--no-dev",
                              "--no-header", "--format", "requirements-txt", "--directory",
                              os.path.dirname(os.path.abspath(lock))], check=True, capture_output=True, text=True)
        return [ln for ln in out.stdout.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    main = "main" if name == "poetry.lock" else "default"
    lines = []
    for package in load_toml(lock).get("package", []):
        groups = package.get("groups") or [package.get("category", main)]
        if main not in groups or package.get("source", {}).get("type") in ("directory", "file"):
            continue
        marker = package.get("markers") or package.get("marker") or ""
        marker = marker.get(main, "") if isinstance(marker, dict) else marker
        lines.append(f"{package['name']}=={package['version']}" + (f" ; {marker}" if marker else ""))
    return lines


def convert(pipfile: str) -> list:
    if os.path.basename(pipfile) in LOCKS:
        return locked(pipfile)
    base = os.path.dirname(os.path.abspath(pipfile))
    lock = os.path.join(base, "Pipfile.lock")
    if os.path.exists(lock):
        with open(lock, encoding="utf-8") as fh:
            data = json.load(fh)
        packages = data.get("default", {})
        sources = data.get("_meta", {}).get("sources", [])
    else:
        data = load_toml(pipfile)
        packages = data.get("packages", {})
        sources = data.get("source", [])
    lines = sources_lines(sources)
    lines += [requirement(name, spec, base) for name, spec in sorted(packages.items())]
    return lines


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: if_pipfile.py PIPFILE")
    sys.stdout.write("".join(line + "\n" for line in convert(sys.argv[1])))

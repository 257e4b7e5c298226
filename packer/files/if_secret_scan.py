"""Scan folders for secrets that must never be baked into an image.

    python3 if_secret_scan.py [--exclude PATH]... [--token-file REL] ROOT...

Looks for AWS access key IDs and secret keys, PEM/OpenSSH/PGP private keys, common API tokens and the
JupyterLab token file (REL: its path under a home folder, config.json's jupyter.token_file). Prints one line per hit, `SECRET <path>: <kind>`, never the secret itself, and
exits 1 when anything is found. Skips package-managed and vendored trees (site-packages, dist-packages,
node_modules, CPython's own test suite, git object stores, apt/dpkg state, caches), symlinks, special
files and files over 20 MB. Runs on the image's system python3 (3.10 or newer).
"""

import os
import re
import stat
import sys

MAX_BYTES = 20 * 1024 * 1024
PATTERNS = (
    ("AWS access key ID", re.compile(rb"(?<![A-Z0-9])(AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}(?![A-Z0-9])")),
    ("AWS secret access key", re.compile(rb"(?i)aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+=]{40}")),
    ("private key (PEM)", re.compile(rb"-----BEGIN (RSA |EC |OPENSSH |DSA |ENCRYPTED )?PRIVATE KEY-----")),
    ("private key (PGP)", re.compile(rb"-----BEGIN PGP PRIVATE KEY BLOCK-----")),
    ("GitHub token", re.compile(rb"\b(gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{40,})\b")),
    ("Slack token", re.compile(rb"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("Google API key", re.compile(rb"\bAIza[0-9A-Za-z_-]{35}\b")),
)
SKIP_DIRS = {"site-packages", "dist-packages", "node_modules", "__pycache__"}
SKIP_PATHS = {"/var/lib/apt", "/var/lib/dpkg", "/var/cache", "/opt/imagefactory/python",
              "/opt/imagefactory/mamba/pkgs", "/proc", "/sys", "/dev", "/run"}


def skip_dir(path: str, excluded: set) -> bool:
    name = os.path.basename(path)
    parent = os.path.basename(os.path.dirname(path))
    if name in SKIP_DIRS or path in excluded:
        return True
    if name == "test" and parent.startswith("python"):  # CPython's test suite ships test keys
        return True
    return name == "objects" and parent == ".git"


def scan_file(path: str, token_file: str = "") -> list:
    if token_file and path.endswith("/" + token_file):
        return ["JupyterLab token file (must be made at first boot, not baked)"]
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError:
        return []
    if len(data) > MAX_BYTES:
        return []
    return [kind for kind, pattern in PATTERNS if pattern.search(data)]


def walk(root: str, excluded: set, token_file: str = "") -> list:
    hits = []
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not skip_dir(os.path.join(top, d), excluded))
        for name in sorted(files):
            path = os.path.join(top, name)
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
            except OSError:
                continue
            hits += [(path, kind) for kind in scan_file(path, token_file)]
    return hits


def main(argv: list) -> int:
    excluded, roots, token_file = set(SKIP_PATHS), [], ""
    args = iter(argv[1:])
    for arg in args:
        if arg == "--exclude":
            excluded.add(os.path.abspath(next(args)).rstrip("/"))
        elif arg == "--token-file":
            token_file = next(args).strip("/")
        else:
            roots.append(os.path.abspath(arg))
    hits = []
    for root in roots:
        if os.path.isdir(root) and root not in excluded:
            hits += walk(root, excluded, token_file)
    for path, kind in hits:
        print(f"SECRET {path}: {kind}")
    print(f"secret scan: {len(hits)} finding(s) in {', '.join(roots)}")
    return 1 if hits else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

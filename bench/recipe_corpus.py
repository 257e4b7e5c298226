"""Derive (and optionally resolve) a recipe for each local checkout; print a table with totals and times.

    python bench/recipe_corpus.py DIR... [--synthetic] [--no-resolve] [--offline] [--cache-dir PATH]
                                         [--scan-scale]

--synthetic adds a built-in set of repository layouts (made in a temp dir). Target: under 1 s per repo
for derive with a warm index cache. A second table (`working_table`) gives, per repo, the code's
imports found and missing, the system packages added, the notebooks found and the time the import scan
and classification take (target: under 1 s per repo of up to 500 files); --scan-scale adds synthetic
repos of 50 to 2000 .py files and notebooks, to show how that time grows with the file count.
Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imagefactory.errors import FactoryError  # noqa: E402
from imagefactory.recipe import PackageIndex, RepoTree, Source, derive  # noqa: E402
from imagefactory.recipe.resolve import resolve  # noqa: E402
from imagefactory.recipe.working import prove  # noqa: E402

SYNTHETIC: dict[str, dict[str, str]] = {
    "dhsvm-like": {"environment/requirements.txt": "matplotlib==3.1.3\nnumpy==1.18.1\ngraphviz==0.13.2\n"
                   "scikit-learn==0.22.1\npydotplus==2.0.2\nSQLAlchemy==1.3.13\nipython==7.12.0\npandas==1.0.1\n",
                   "environment/setup.sh": "#!/bin/bash\n"},
    "binder-conda": {"binder/environment.yml": "dependencies:\n  - python>=3.9,<3.11\n  - numpy\n  - pip:\n"
                     "    - requests==2.31.0\n", "binder/postBuild": "#!/bin/bash\n", "requirements.txt": "x\n"},
    "package": {"pyproject.toml": "[project]\nname='p'\nrequires-python='>=3.8'\n",
                "requirements.txt": "numpy==1.26.4\n"},
    "pipfile": {"Pipfile": "[packages]\nrequests = '==2.31.0'\n[requires]\npython_version = '3.10'\n"},
    "bare": {"README.md": "nothing\n", "analysis.py": "print(1)\n"},
    "r-and-docker": {"install.R": "x\n", "Dockerfile": "FROM x\n", "apt.txt": "git\n",
                     "requirements.txt": "cryptography==41.0.7\n"},
}


def make_synthetic(base: Path) -> list[Path]:
    out = []
    for name, files in SYNTHETIC.items():
        for rel, text in files.items():
            (base / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / name / rel).write_text(text)
        out.append(base / name)
    return out


def bench_one(repo: Path, index: PackageIndex | None, do_resolve: bool) -> list[str]:
    started = time.perf_counter()
    try:
        tree = RepoTree.scan(repo)
        d = derive(tree, name="bench", source=Source(str(repo), None, "bench"), index=index)
    except FactoryError as exc:
        return [repo.name, "ERROR", str(exc)[:60], "-", f"{time.perf_counter() - started:.3f}", "-"]
    derive_s = time.perf_counter() - started
    py = d.recipe.environment.python
    resolved, resolve_s = "-", "-"
    if do_resolve:
        t0 = time.perf_counter()
        r = resolve(d.recipe, tree, index=index)
        resolved, resolve_s = ("yes" if r.ok else "NO"), f"{time.perf_counter() - t0:.2f}"
    used = ",".join(f.path for f in d.used if f.kind != "setup-script") or "(none)"
    return [repo.name, used, f"{py.version} {py.source}", resolved, f"{derive_s:.3f}", resolve_s]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="*", type=Path)
    ap.add_argument("--synthetic", action="store_true", help="add the built-in synthetic layouts")
    ap.add_argument("--no-resolve", action="store_true", help="skip the uv resolve check")
    ap.add_argument("--offline", action="store_true", help="do not ask the package index (no inference)")
    ap.add_argument("--scan-scale", action="store_true", help="add synthetic repos of 50..2000 code files")
    ap.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "imagefactory" / "simple-api")
    args = ap.parse_args()
    index = None if args.offline else PackageIndex.from_environment(cache_dir=args.cache_dir)
    with tempfile.TemporaryDirectory(prefix="recipe-corpus-") as tmp:
        repos = list(args.dirs) + (make_synthetic(Path(tmp)) if args.synthetic else [])
        if not repos:
            ap.error("give checkout directories or --synthetic")
        rows = [bench_one(r, index, not args.no_resolve and index is not None) for r in repos]
        scaled = make_scaled(Path(tmp) / "scaled") if args.scan_scale else []
        working = working_table([*repos, *scaled], index)
    header = ["repo", "files used", "python", "resolves", "derive s", "resolve s"]
    widths = [max(len(str(x[i])) for x in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    derive_times = [float(r[4]) for r in rows]
    print(f"\n{len(rows)} repos; derived {sum(r[1] != 'ERROR' for r in rows)}; "
          f"resolved {sum(r[3] == 'yes' for r in rows)}; derive total {sum(derive_times):.3f} s, "
          f"mean {sum(derive_times) / len(rows):.3f} s, max {max(derive_times):.3f} s per repo")
    print()
    print_table(["repo", "code files", "imports", "missing", "system pkgs", "notebooks", "scan s"], working)
    return 0


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x[i])) for x in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


SCALED_NOTEBOOK = ('{"cells": [{"cell_type": "code", "source": ["%matplotlib inline\\n", "import numpy as np\\n", '
                   '"import pandas\\n"]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')


def make_scaled(base: Path) -> list[Path]:
    """Repos of N code files (one in ten a notebook), each file ~40 lines with a few imports."""
    out = []
    body = "import os\nimport numpy as np\nfrom scipy import stats\nimport mod_{j}\n" + "x = 1\n" * 36
    for n in (50, 500, 2000):
        root = base / f"scaled-{n}"
        (root / "pkg").mkdir(parents=True)
        (root / "requirements.txt").write_text("numpy\npandas\n")
        for i in range(n):
            if i % 10 == 9:
                (root / "pkg" / f"nb_{i}.ipynb").write_text(SCALED_NOTEBOOK)
            else:
                (root / "pkg" / f"mod_{i}.py").write_text(body.format(j=(i + 1) % n))
        out.append(root)
    return out


def working_table(repos: list[Path], index: PackageIndex | None) -> list[list[str]]:
    """Per repo: code files, imports found, missing (with a provider found), system packages added,
    notebooks found, and the seconds `prove` takes (scan, classify, providers, system packages)."""
    rows = []
    for repo in repos:
        try:
            tree = RepoTree.scan(repo)
            d = derive(tree, name="bench", source=Source(str(repo), None, "bench"), index=index)
            started = time.perf_counter()
            prove(tree, d.recipe, index=index)  # timed again on its own: what derivation spends on it
            took = time.perf_counter() - started
            working = d.working
        except FactoryError as exc:
            rows.append([repo.name, "ERROR", str(exc)[:40], "-", "-", "-", "-"])
            continue
        if working is None:
            continue
        imp = working.imports
        found = sum(1 for u in imp.of("missing") if u.provider)
        rows.append([repo.name, str(imp.python_files + len(imp.notebooks)), str(len(imp.uses)),
                     f"{len(imp.of('missing'))} ({found} found)", ",".join(working.apt_added) or "-",
                     str(len(imp.notebooks)), f"{took:.3f}"])
    return rows


if __name__ == "__main__":
    raise SystemExit(main())

"""Derive (and optionally resolve) a recipe for each local checkout; print what became of every file.

    python bench/recipe_corpus.py DIR... [--fixtures] [--synthetic] [--details] [--no-resolve] [--no-search]
                                  [--offline] [--cache-dir PATH] [--scan-scale]

A DIR is a checkout, or a folder of checkouts (each sub-folder one repository). --fixtures adds the
test repositories of tests/repos14/ and --synthetic a built-in set of layouts (made in a temp dir): no
network to GitHub is needed. Per repository: environment-like files used, ignored with a reason, and
silently dropped (in the tree but in neither list), the Python chosen and why, whether the pip part
resolves (uv against the package index), and the times; then the totals and the whole run's time.
Target: under 1 s per repo for derive with a warm index cache.

A second table (`working_table`) gives, per repo, the code's imports found and missing, the system
packages added, the notebooks found and the time the import scan and classification take (target: under
1 s per repo of up to 500 files); --scan-scale adds synthetic repos of 50 to 2000 .py files and
notebooks, to show how that time grows with the file count. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imagefactory.errors import FactoryError  # noqa: E402
from imagefactory.recipe import PackageIndex, RepoTree, Source, derive  # noqa: E402
from imagefactory.recipe.accounting import kind  # noqa: E402
from imagefactory.recipe.pysearch import resolving_attempt  # noqa: E402
from imagefactory.recipe.pythons import buildable  # noqa: E402
from imagefactory.recipe.resolve import find_uv, resolve  # noqa: E402
from imagefactory.recipe.working import prove  # noqa: E402

FIXTURES = ROOT / "tests" / "repos14"
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
    "numpy-cap": {"requirements.txt": "numpy<1.25\nscipy\n"},
    "disagree": {"runtime.txt": "python-3.9\n", "environment.yml": "dependencies:\n  - python=3.12\n  - pip:\n"
                 "    - numpy==2.3.0\n"},
}
HEADER = ["repo", "used", "ignored", "dropped", "python", "resolves", "derive s", "resolve s"]


def make_synthetic(base: Path) -> list[Path]:
    out = []
    for name, files in SYNTHETIC.items():
        for rel, text in files.items():
            (base / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / name / rel).write_text(text)
        out.append(base / name)
    return out


def checkouts(dirs: list[Path]) -> list[Path]:
    """Each DIR as a checkout when it looks like one (a .git, or environment-like files at its top), else
    its sub-folders."""
    out: list[Path] = []
    for d in dirs:
        top = [p for p in d.iterdir() if p.is_file() and kind(p.name)] if d.is_dir() else []
        if (d / ".git").exists() or top:
            out.append(d)
        else:
            out += sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
    return out


def bench_one(repo: Path, args: argparse.Namespace, index: PackageIndex | None, cache: Path,
              details: list[str]) -> list[str]:
    started = time.perf_counter()
    try:
        tree = RepoTree.scan(repo)
        pythons = buildable(find_uv(), index=index, cache_dir=cache)[0]
        attempt_for = None
        if index is not None and not args.no_search:
            attempt_for = lambda env: resolving_attempt(env, tree, index, cache / "python-search")  # noqa: E731
        d = derive(tree, name="bench", source=Source(str(repo), None, "bench"), index=index, pythons=pythons,
                   attempt_for=attempt_for)
    except FactoryError as exc:
        details += [f"{repo.name}: ERROR {exc}"]
        return [repo.name, "ERROR", "-", "-", str(exc)[:40], "-", f"{time.perf_counter() - started:.3f}", "-"]
    derive_s = time.perf_counter() - started
    reported = {f.path for f in (*d.used, *d.ignored)}
    dropped = [f for f in tree.files if kind(f) and f not in reported]
    py = d.recipe.environment.python
    resolved, resolve_s = "-", "-"
    if index is not None and not args.no_resolve:
        t0 = time.perf_counter()
        r = resolve(d.recipe, tree, index=index)
        resolved, resolve_s = ("yes" if r.ok else "NO"), f"{time.perf_counter() - t0:.2f}"
        if not r.ok:
            details.append(f"{repo.name}: does not resolve: {r.message} ({r.hint})")
    details += [f"{repo.name}: used    {f.path}: {f.reason}" for f in d.used]
    details += [f"{repo.name}: ignored {f.path}: {f.reason}" for f in d.ignored]
    details += [f"{repo.name}: DROPPED {p}" for p in dropped]
    details.append(f"{repo.name}: python  {py.version} ({py.source}) - {py.reason}")
    return [repo.name, str(len(d.used)), str(len(d.ignored)), str(len(dropped)), f"{py.version} {py.source}",
            resolved, f"{derive_s:.3f}", resolve_s]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="*", type=Path)
    ap.add_argument("--fixtures", action="store_true", help="add the test repositories of tests/repos14/")
    ap.add_argument("--synthetic", action="store_true", help="add the built-in synthetic layouts")
    ap.add_argument("--details", action="store_true", help="print every file's fate and each Python's reason")
    ap.add_argument("--no-resolve", action="store_true", help="skip the uv resolve check")
    ap.add_argument("--no-search", action="store_true", help="do not search Pythons with the resolver")
    ap.add_argument("--offline", action="store_true", help="do not ask the package index (no inference)")
    ap.add_argument("--scan-scale", action="store_true", help="add synthetic repos of 50..2000 code files")
    ap.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "imagefactory" / "recipe-corpus")
    args = ap.parse_args()
    index = None if args.offline else PackageIndex.from_environment(cache_dir=args.cache_dir / "index")
    wall = time.perf_counter()
    details: list[str] = []
    with tempfile.TemporaryDirectory(prefix="recipe-corpus-") as tmp:
        repos = checkouts(list(args.dirs))
        if args.fixtures:
            fixtures = Path(tmp) / "fixtures"
            shutil.copytree(FIXTURES, fixtures)
            repos += checkouts([fixtures])
        repos += make_synthetic(Path(tmp) / "synthetic") if args.synthetic else []
        if not repos:
            ap.error("give checkout directories, --fixtures or --synthetic")
        rows = [bench_one(r, args, index, args.cache_dir, details) for r in repos]
        scaled = make_scaled(Path(tmp) / "scaled") if args.scan_scale else []
        working = working_table([*repos, *scaled], index)
    widths = [max(len(str(x[i])) for x in [HEADER, *rows]) for i in range(len(HEADER))]
    for row in [HEADER, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    if args.details:
        print("\n" + "\n".join(details))
    ok = [r for r in rows if r[1] != "ERROR"]
    derive_times = [float(r[6]) for r in rows]
    print(f"\n{len(rows)} repos; derived {len(ok)}; files used {sum(int(r[1]) for r in ok)}, ignored with a "
          f"reason {sum(int(r[2]) for r in ok)}, silently dropped {sum(int(r[3]) for r in ok)}; resolved "
          f"{sum(r[5] == 'yes' for r in rows)}, not resolved {sum(r[5] == 'NO' for r in rows)}; derive total "
          f"{sum(derive_times):.3f} s, mean {sum(derive_times) / len(rows):.3f} s, max {max(derive_times):.3f} s "
          f"per repo; total time {time.perf_counter() - wall:.2f} s")
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

"""What the repository's code imports, and where each import comes from in the image.

`scan(tree)` reads every `.py` file and the code cells of every `.ipynb` notebook (IPython magics, `!`
shell lines and `%%` cell magics skipped; a file that does not parse as Python 3 still yields its plain
`import x` / `from x import y` lines) and lists each top-level module imported with the places that
import it (`path:line`, or `path#cell N` for a notebook cell). Relative imports and `__future__` are not
modules to install. `setup.py` is a build script, not the code a researcher runs, and is not scanned.

`classify(scan, python, dists, local)` says for each module:
  stdlib    ships with the recipe's Python version (`imagefactory.recipe.stdlib`, per minor),
  local     a module or package in the repository (any folder: scripts and notebooks run beside them),
  provided  installed by the recipe's packages (`imagefactory.recipe.import_names`) or with the kernel
            (ipykernel and what it brings),
  dependency  a well-known dependency of one of them (scipy of scikit-learn): usually there, measured by
            the smoke test (a failure there only warns under the default policy),
  missing   none of these: the report names the files, and `find_providers` the distribution to add.
Pure over its inputs; `scan` reads only under `tree.root`, `find_providers` asks only `index`.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any

from imagefactory.recipe.import_names import dependencies, preferred, provides
from imagefactory.recipe.index import IndexUnavailable, PackageIndex
from imagefactory.recipe.stdlib import is_stdlib
from imagefactory.recipe.tree import RepoTree

MAX_SOURCE_BYTES = 2 * 1024 * 1024     # larger .py files are skipped with a note
MAX_NOTEBOOK_BYTES = 32 * 1024 * 1024  # notebooks carry their outputs (images): larger ones are skipped
PLAIN_IMPORT = re.compile(r"^\s*import\s+([A-Za-z_][\w.]*(?:\s*(?:as\s+\w+)?\s*,\s*[A-Za-z_][\w.]*)*)")
PLAIN_FROM = re.compile(r"^\s*from\s+([A-Za-z_][\w.]*)\s+import\b")
NOT_SCANNED = frozenset({"setup.py"})
# installed in every kernel env with ipykernel (so importable whatever the recipe says)
KERNEL_PROVIDED = frozenset({
    "ipykernel", "IPython", "traitlets", "jupyter_client", "jupyter_core", "tornado", "zmq", "comm",
    "matplotlib_inline", "prompt_toolkit", "pygments", "debugpy", "psutil", "packaging", "platformdirs",
    "decorator", "jedi", "parso", "pexpect", "ptyprocess", "wcwidth", "executing", "asttokens", "pure_eval",
    "stack_data", "dateutil", "nest_asyncio", "pip"})
KINDS = ("stdlib", "local", "provided", "dependency", "missing")


@dataclass(frozen=True)
class Scan:
    """module -> the places importing it (sorted); what was read; notes (files skipped and why)."""

    modules: dict[str, tuple[str, ...]]
    python_files: int = 0
    notebooks: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImportUse:
    module: str
    kind: str                      # one of KINDS
    sites: tuple[str, ...]
    provider: str | None = None    # the distribution that provides it (provided) or would (missing)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"module": self.module, "kind": self.kind, "sites": list(self.sites), "provider": self.provider,
                "reason": self.reason}


@dataclass(frozen=True)
class Imports:
    uses: tuple[ImportUse, ...] = ()
    python_files: int = 0
    notebooks: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def of(self, kind: str) -> tuple[ImportUse, ...]:
        return tuple(u for u in self.uses if u.kind == kind)

    def addable(self) -> tuple[str, ...]:
        """The distributions found for missing imports, each once, in module order."""
        out: list[str] = []
        for use in self.of("missing"):
            if use.provider and use.provider not in out:
                out.append(use.provider)
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        counts = {kind: len(self.of(kind)) for kind in KINDS}
        return {"python_files": self.python_files, "notebooks": list(self.notebooks), "counts": counts,
                "modules": [u.to_dict() for u in self.uses], "notes": list(self.notes)}


# --- scanning -----------------------------------------------------------------------------------------

def scan(tree: RepoTree) -> Scan:
    found: dict[str, set[str]] = {}
    py_count, notebooks, notes = 0, [], []
    for rel in tree.files:
        name = PurePosixPath(rel).name
        if not rel.endswith((".py", ".ipynb")) or name in NOT_SCANNED:
            continue
        text = _read(tree, rel, notes)
        if text is None:
            continue
        if rel.endswith(".py"):
            py_count += 1
            for module, line in source_imports(text):
                found.setdefault(module, set()).add(f"{rel}:{line}")
        else:
            notebooks.append(rel)
            cells = notebook_cells(text)
            if cells is None:
                notes.append(f"{rel}: not a readable notebook (JSON); its imports were not scanned")
                continue
            for number, cell in cells:
                for module, _ in source_imports(cell):
                    found.setdefault(module, set()).add(f"{rel}#cell {number}")
    modules = {m: tuple(sorted(sites, key=_site_key)) for m, sites in sorted(found.items())}
    return Scan(modules, py_count, tuple(notebooks), tuple(notes))


def _read(tree: RepoTree, rel: str, notes: list[str]) -> str | None:
    path = tree.root / rel
    limit = MAX_NOTEBOOK_BYTES if rel.endswith(".ipynb") else MAX_SOURCE_BYTES
    try:
        if not path.resolve().is_relative_to(tree.root) or path.stat().st_size > limit:
            notes.append(f"{rel}: larger than {limit // 1024 // 1024} MB or outside the repository; "
                         "its imports were not scanned")
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        notes.append(f"{rel}: cannot be read; its imports were not scanned")
        return None


def _site_key(site: str) -> tuple[str, int]:
    path, _, where = site.replace("#cell ", ":").rpartition(":")
    return path, int(where) if where.isdigit() else 0


def source_imports(text: str) -> list[tuple[str, int]]:
    """(top-level module, line) for each absolute import in `text`; plain lines when it does not parse."""
    try:
        node = ast.parse(text)
    except (SyntaxError, ValueError):
        return _plain_imports(text)
    out: list[tuple[str, int]] = []
    for item in ast.walk(node):
        if isinstance(item, ast.Import):
            out += [(alias.name.split(".")[0], item.lineno) for alias in item.names]
        elif isinstance(item, ast.ImportFrom) and item.level == 0 and item.module:
            out.append((item.module.split(".")[0], item.lineno))
    return [(m, n) for m, n in out if m != "__future__"]


def _plain_imports(text: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if m := PLAIN_FROM.match(line):
            out.append((m.group(1).split(".")[0], number))
        elif m := PLAIN_IMPORT.match(line):
            for part in m.group(1).split(","):
                out.append((part.split()[0].split(".")[0], number))
    return [(m, n) for m, n in out if m != "__future__"]


def notebook_cells(text: str) -> list[tuple[int, str]] | None:
    """(1-based cell number, Python source) of each code cell, magics and shell lines blanked (line numbers
    kept); a `%%` cell magic drops the whole cell. None when the text is not a notebook."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    cells = data.get("cells") if isinstance(data, dict) else None
    if not isinstance(cells, list):
        return None
    out = []
    for number, cell in enumerate(cells, 1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        if source.lstrip().startswith("%%"):
            continue
        lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
        out.append((number, "\n".join(lines)))
    return out


# --- classifying --------------------------------------------------------------------------------------

def local_modules(tree: RepoTree) -> frozenset[str]:
    """Top-level names importable from some folder of the repository: `x.py`, `x/` holding Python files,
    and compiled `x.*.so` extensions."""
    names: set[str] = set()
    for rel in tree.files:
        path = PurePosixPath(rel)
        if path.suffix == ".py":
            names.add(path.stem)
            names.update(p for p in path.parent.parts)
        elif path.suffix in (".so", ".pyd"):
            names.add(path.name.split(".")[0])
    return frozenset(n for n in names if n.isidentifier())


def classify(found: Scan, *, python: str, dists: tuple[str, ...], local: frozenset[str]) -> Imports:
    """Each scanned module's kind for Python `python` and the recipe's distributions `dists`."""
    provided = {name: dist for dist in dists for name in provides(dist)}
    depended = {name: dist for dist in dists for dep in dependencies(dist) for name in provides(dep)}
    uses = []
    for module, sites in found.modules.items():
        if is_stdlib(module, python):
            uses.append(ImportUse(module, "stdlib", sites, reason=f"standard library of Python {python}"))
        elif module in local:
            uses.append(ImportUse(module, "local", sites, reason="a module or package in the repository"))
        elif module.lower() in provided:
            dist = provided[module.lower()]
            uses.append(ImportUse(module, "provided", sites, dist, f"installed by {dist}"))
        elif module in KERNEL_PROVIDED:
            uses.append(ImportUse(module, "provided", sites, "ipykernel", "installed with the kernel (ipykernel)"))
        elif module.lower() in depended:
            dist = depended[module.lower()]
            uses.append(ImportUse(module, "dependency", sites, dist, f"usually installed as a dependency of {dist}"))
        else:
            uses.append(ImportUse(module, "missing", sites, reason=_missing_reason(module, python)))
    return Imports(tuple(uses), found.python_files, found.notebooks, found.notes)


def _missing_reason(module: str, python: str) -> str:
    if is_stdlib(module, "3.8") or is_stdlib(module, "3.11"):
        return f"not in the standard library of Python {python} (removed or not yet added)"
    return "no package of the recipe provides it"


def find_providers(imports: Imports, index: PackageIndex | None) -> tuple[Imports, tuple[str, ...]]:
    """Name the distribution for each missing import: the table's, else the index's project of the same
    name. Returns the updated imports and notes (index unreachable, offline)."""
    notes: list[str] = []
    uses = []
    for use in imports.uses:
        if use.kind != "missing" or use.provider:
            uses.append(use)
            continue
        dist, why = preferred(use.module), "the import-name table"
        if dist is None and index is not None and not notes:
            try:
                if index.files(use.module) is not None:
                    dist, why = use.module, f"a project of that name on {index.display_url}"
            except IndexUnavailable as exc:
                notes.append(f"missing imports: the package index was not asked further ({exc})")
        if dist is None:
            uses.append(replace(use, reason=f"{use.reason}; no distribution found for it"))
        else:
            uses.append(replace(use, provider=dist, reason=f"{use.reason}; {dist} provides it ({why})"))
    if index is None and any(u.kind == "missing" and not u.provider for u in uses):
        notes.append("missing imports: offline, so only the import-name table was consulted")
    return replace(imports, uses=tuple(uses)), tuple(notes)

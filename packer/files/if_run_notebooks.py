"""Smoke test, part 4: run the recipe's notebooks marked `run: true`, headless, in the kernel env.

    SERVER/bin/python if_run_notebooks.py CONFIG REPO_DIR KERNEL_NAME RESULT_JSON
    SERVER/bin/python if_run_notebooks.py --failed RESULT_JSON    # one line: the failed notebooks, cells and errors

Run as the login user. Each notebook of config.json's `smoke.notebooks` is executed with nbclient (which
the server env's JupyterLab brings) on the recipe's kernel, cell by cell, each cell within the notebook's
`timeout` seconds, with the notebook's own folder as the working directory (as JupyterLab runs it). The
notebook file is not changed. A failing cell fails the smoke test, naming the notebook and the cell
(1-based, counting every cell, as the factory's import scan does). Writes [{"path", "ok", "seconds",
"cell", "error"}] to RESULT_JSON ([] when none is to run; nbclient, which takes a second to import, is then
not imported).
"""

import json
import os
import re
import sys
import time

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def run(path: str, kernel: str, timeout: int) -> dict:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    notebook = nbformat.read(path, as_version=4)
    folder = os.path.dirname(path)
    client = NotebookClient(notebook, timeout=timeout, kernel_name=kernel, resources={"metadata": {"path": folder}})
    started = time.monotonic()
    cell_no, error = None, None
    with client.setup_kernel(cwd=folder):
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
            except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
                cell_no = index + 1
                text = ANSI.sub("", str(exc)).strip().splitlines()
                error = f"{type(exc).__name__}: {text[-1] if text else ''}"[:300]
                break
    return {"ok": error is None, "seconds": round(time.monotonic() - started, 2), "cell": cell_no, "error": error}


def failed_line(results: list) -> str:
    """The failed notebooks in one line, each with its cell and error (80-smoke's reason for the bake)."""
    return "; ".join(f"{r['path']} " + (f"cell {r['cell']}" if r["cell"] else "before any cell") + f": {r['error']}"
                     for r in results if not r["ok"])


def main(argv: list) -> int:
    if len(argv) == 3 and argv[1] == "--failed":
        try:
            with open(argv[2], encoding="utf-8") as fh:
                print(failed_line(json.load(fh)))
        except (OSError, ValueError):  # the runner itself failed before writing: its output says why
            print("the notebook runner failed (see its output above)")
        return 0
    with open(argv[1], encoding="utf-8") as fh:
        notebooks = (json.load(fh).get("smoke") or {}).get("notebooks", [])
    repo, kernel = argv[2], argv[3]
    results = []
    for item in notebooks:
        print(f"notebook: running {item['path']} (kernel {kernel}, {item['timeout']} s per cell)", flush=True)
        try:
            outcome = run(os.path.join(repo, item["path"]), kernel, int(item["timeout"]))
        except Exception as exc:  # unreadable notebook, kernel that will not start: the notebook failed
            outcome = {"ok": False, "seconds": 0.0, "cell": None, "error": f"{type(exc).__name__}: {exc}"[:300]}
        results.append({"path": item["path"], **outcome})
        if outcome["ok"]:
            print(f"notebook: {item['path']} ran in {outcome['seconds']} s", flush=True)
        else:
            where = f"cell {outcome['cell']}" if outcome["cell"] else "before any cell"
            print(f"notebook: {item['path']} FAILED at {where}: {outcome['error']}", flush=True)
    with open(argv[4], "w", encoding="utf-8") as fh:
        json.dump(results, fh)
    if not all(r["ok"] for r in results):
        print("notebook: failed: " + failed_line(results))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

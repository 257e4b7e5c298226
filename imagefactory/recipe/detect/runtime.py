"""runtime.txt: `python-X.Y` states the Python version; `r-X.Y-YYYY-MM-DD` asks for R, not yet supported."""

from __future__ import annotations

import re

from imagefactory.errors import RecipeError
from imagefactory.recipe.findings import Detection, Finding, PythonClaim
from imagefactory.recipe.tree import RepoTree

PYTHON = re.compile(r"python-(?P<v>[23]\.\d{1,2})(\.\d+)?")  # 2.x too: refused by the range, with the fix
R = re.compile(r"r-((\d+\.\d+(\.\d+)?)-)?\d{4}-\d{2}-\d{2}")


def detect(tree: RepoTree) -> Detection:
    rel = tree.find("runtime.txt")
    if rel is None:
        return Detection()
    lines = [(n, raw.strip()) for n, raw in enumerate(tree.read_text(rel).splitlines(), start=1)
             if raw.strip() and not raw.strip().startswith("#")]
    if not lines:
        return Detection(ignored=(Finding(rel, "runtime", "empty"),))
    number, text = lines[0]
    match = PYTHON.fullmatch(text)
    if match:
        claim = PythonClaim(f"=={match.group('v')}.*", f"{rel} line {number}", 0)
        used = Finding(rel, "runtime", f"states Python {match.group('v')}")
        return Detection(used=(used,), python=(claim,))
    if R.fullmatch(text):
        return Detection(ignored=(Finding(rel, "runtime", f"'{text}' asks for R: not yet supported "
                                                          "(R kernels are not installed yet)"),))
    raise RecipeError(f"{rel}:{number}: {text!r} is not a runtime the factory knows",
                      "write python-3.X (e.g. python-3.10) or r-4.3-2024-01-01")

"""setup.py / setup.cfg / pyproject.toml at the repository root: install the repository as a package
(`install_repo: true`), after conda, pip and Pipfile. Their requires-python states the Python.

setup.py is read as text, never executed. A pyproject.toml without a [project] or [build-system] table
(tool settings only) and a setup.cfg on its own do not make an installable package: reported as ignored.
Not consulted when binder/ or .binder/ is used (the root is ignored then, as in repo2docker).
"""

from __future__ import annotations

import configparser
import re

from imagefactory.documents import load_toml
from imagefactory.errors import RecipeError
from imagefactory.recipe.findings import Detection, Finding, PythonClaim
from imagefactory.recipe.layout import root_is_package
from imagefactory.recipe.model import Environment
from imagefactory.recipe.tree import RepoTree

SETUP_PY_REQUIRES = re.compile(r"""python_requires\s*=\s*(['"])(?P<spec>[^'"]+)\1""")


def detect(tree: RepoTree) -> Detection:
    if "" not in tree.places:
        return Detection()
    present = [f for f in ("setup.py", "setup.cfg", "pyproject.toml") if tree.has(f)]
    if not present:
        return Detection()
    if not root_is_package(tree):
        why = {"pyproject.toml": "has no [project] or [build-system] table: tool settings, not a package",
               "setup.cfg": "without setup.py or a package pyproject.toml it cannot be installed"}
        return Detection(ignored=tuple(Finding(f, "package", why[f]) for f in present))
    claims = [c for f in present for c in _claims(tree, f)]
    used = tuple(Finding(f, "package", "the repository is installed as a package (pip install .)")
                 for f in present)
    return Detection(used=used, environment=Environment(install_repo=True), python=tuple(claims))


def _claims(tree: RepoTree, rel: str) -> list[PythonClaim]:
    text = tree.read_text(rel)
    spec: str | None = None
    if rel == "pyproject.toml":
        try:
            project = load_toml(text, rel).get("project")
        except RecipeError:  # a pyproject.toml the factory cannot read states no Python: not an error here
            return []
        spec = project.get("requires-python") if isinstance(project, dict) else _poetry_python(tree, rel)
    elif rel == "setup.cfg":
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(text)
        except configparser.Error:
            return []
        spec = parser.get("options", "python_requires", fallback=None)
    else:
        match = SETUP_PY_REQUIRES.search(text)
        spec = match.group("spec") if match else None
    if not isinstance(spec, str) or not spec.strip():
        return []
    where = "python_requires" if rel != "pyproject.toml" else "requires-python"
    return [PythonClaim(spec.strip(), f"{rel} {where}", 4 if rel == "setup.py" else 3)]


def _poetry_python(tree: RepoTree, rel: str) -> str | None:
    """[tool.poetry.dependencies] python ('^3.10', '~3.9', '>=3.8,<3.12') as a PEP 440 specifier set."""
    try:
        tool = load_toml(tree.read_text(rel), rel).get("tool")
    except RecipeError:
        return None
    poetry = tool.get("poetry") if isinstance(tool, dict) else None
    deps = poetry.get("dependencies") if isinstance(poetry, dict) else None
    value = deps.get("python") if isinstance(deps, dict) else None
    if not isinstance(value, str):
        return None
    parts = []
    for part in (p.strip() for p in value.split(",")):
        caret, tilde = re.fullmatch(r"\^(\d+)(?:\.(\d+))?.*", part), re.fullmatch(r"~(\d+)\.(\d+).*", part)
        if caret:
            parts += [f">={part[1:]}", f"<{int(caret.group(1)) + 1}"]
        elif tilde:
            parts += [f">={part[1:]}", f"<{tilde.group(1)}.{int(tilde.group(2)) + 1}"]
        else:
            parts.append(part)
    return ",".join(parts)

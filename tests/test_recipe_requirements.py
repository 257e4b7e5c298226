"""The requirements-line parser and the conda spec reader, without any repository."""

from __future__ import annotations

import pytest

from imagefactory.errors import RecipeError
from imagefactory.recipe.envfile import conda_python_spec
from imagefactory.recipe.requirements import parse_requirements


def test_kinds_names_and_pins() -> None:
    text = ("# top\nnumpy==1.18.1  # pinned\n-r other.txt\n--index-url https://i/simple\n-e .\n"
            "git+https://github.com/a/b.git#egg=B_pkg\npandas>=1 \\\n  ; python_version > '3'\n"
            "foo==1.0 --hash=sha256:abc\nreq[socks] @ https://x/y.whl\n--pre\n-rbase.txt\n--constraint=c.txt\n"
            "bar==2.* \nbaz==1.0; sys_platform == 'win32'\n${HOME}/pkg\n")
    got = [(r.line, r.kind, r.name, r.pin) for r in parse_requirements(text, "r.txt")]
    assert got == [
        (2, "requirement", "numpy", "1.18.1"), (3, "requirement-file", None, None),
        (4, "index-url", None, None), (5, "editable", None, None), (6, "url", "b-pkg", None),
        (7, "requirement", "pandas", None), (9, "requirement", "foo", "1.0"), (10, "url", "req", None),
        (11, "option", None, None), (12, "requirement-file", None, None), (13, "constraint", None, None),
        (14, "requirement", "bar", None), (15, "requirement", "baz", None), (16, "requirement", None, None),
    ]


@pytest.mark.parametrize(("text", "line", "hint"), [
    ("numpy=1.18\n", 1, "conda"),
    ("ok\nfoo bar baz\n", 2, "PEP 508"),
    ("--bogus x\n", 1, "pip accepts"),
    ("-r\n", 1, "VALUE"),
])
def test_errors(text: str, line: int, hint: str) -> None:
    with pytest.raises(RecipeError) as err:
        parse_requirements(text, "req.txt")
    assert err.value.message.startswith(f"req.txt:{line}:")
    assert hint in err.value.hint


@pytest.mark.parametrize(("dep", "spec"), [
    ("python=3.8", "==3.8.*"), ("python 3.8", "==3.8.*"), ("python>=3.9,<3.11", ">=3.9,<3.11"),
    ("python >=3.9", ">=3.9"), ("python", ""), ("conda-forge::python=3.9", "==3.9.*"),
    ("python==3.8", "==3.8.*"), ("python=3.8.5", "==3.8.5"), ("python=3.8=h12_0", "==3.8.*"),
    ("python 3.8.*", "==3.8.*"), ("python=3", "==3.*"), ("python 3.8|3.9", "==3.8.*|==3.9.*"),
    ("pythonnet", None), ("ipython=7", None),
])
def test_conda_python_spec(dep: str, spec: str | None) -> None:
    assert conda_python_spec(dep) == spec

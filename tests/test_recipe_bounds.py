"""Bad input stays small: YAML bombs, deep nesting, huge files and malformed conda specs in a repository
end in one short error naming the file and line, in bounded time and memory."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imagefactory.errors import RecipeError
from imagefactory.recipe import RepoTree, Source, derive
from imagefactory.recipe.envfile import is_match_spec

SRC = Source("https://example.org/repo.git", "main", "0" * 40)
DERIVE = """
import sys
from pathlib import Path
from imagefactory.errors import RecipeError
from imagefactory.recipe import RepoTree, Source, derive
try:
    derive(RepoTree.scan(Path(sys.argv[1])), name="bomb", source=Source("x", None, "0"), index=None)
except RecipeError as exc:
    print(exc)
    sys.exit(3)
print("accepted")
"""


def laughs(levels: int = 9, fan: int = 9) -> str:
    """The YAML "billion laughs": each anchor refers `fan` times to the one before."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        refs = ", ".join(f"*a{i - 1}" for _ in range(fan))
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    resource.setrlimit(resource.RLIMIT_CPU, (60, 60))


def derive_in_child(root: Path) -> tuple[int, str, float, int]:
    """Derive in a child process capped at 2 GB and 60 s of CPU: exit code, output, wall seconds, peak RSS KB."""
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", DERIVE, str(root)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, preexec_fn=_limits)
    assert proc.stdout is not None
    out = proc.stdout.read(100_000).decode(errors="replace")
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out, time.monotonic() - start, usage.ru_maxrss


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.mark.parametrize("where", ["top", "pip"])
def test_billion_laughs_is_refused_small_and_fast(tmp_path: Path, where: str) -> None:
    bomb = laughs()
    if where == "top":
        text = bomb + "dependencies:\n  - python=3.11\n  - *a9\n"
    else:
        text = bomb + "dependencies:\n  - python=3.11\n  - pip:\n      - *a9\n"
    write(tmp_path, {"environment.yml": text})
    code, out, seconds, peak_kb = derive_in_child(tmp_path)
    assert code == 3, out[:500]
    assert out.startswith("environment.yml:2: ") and "alias" in out
    assert len(out) < 400
    assert seconds < 20
    assert peak_kb < 300_000


def test_deep_nesting_and_huge_files_are_refused(tmp_path: Path) -> None:
    deep = write(tmp_path / "deep", {"environment.yml": "dependencies: " + "[" * 500 + "]" * 500 + "\n"})
    with pytest.raises(RecipeError, match=r"^environment.yml:1: nested more than 64 levels"):
        derive(RepoTree.scan(deep), name="x", source=SRC)
    huge = write(tmp_path / "huge", {"environment.yml": "dependencies:\n" + "  - numpy\n" * 120_000})
    with pytest.raises(RecipeError, match=r"^environment.yml: .* over the limit of 1000000") as err:
        derive(RepoTree.scan(huge), name="x", source=SRC)
    assert len(str(err.value)) < 300
    toml = write(tmp_path / "toml", {"Pipfile": "[packages]\nx = " + "[" * 500 + "]" * 500 + "\n"})
    with pytest.raises(RecipeError, match=r"^Pipfile: nested"):
        derive(RepoTree.scan(toml), name="x", source=SRC)


def test_errors_quote_at_most_200_characters_of_the_input(tmp_path: Path) -> None:
    long = "x" * 100_000
    write(tmp_path / "a", {"environment.yml": f"dependencies:\n  - numpy - [{long}\n"})
    write(tmp_path / "b", {"environment.yml": f"dependencies:\n  - pip:\n      - 'numpy @@ {long}'\n"})
    write(tmp_path / "c", {"requirements.txt": f"numpy==={long} ;; x\n"})
    for case in ("a", "b", "c"):
        with pytest.raises(RecipeError) as err:
            derive(RepoTree.scan(tmp_path / case), name="x", source=SRC)
        assert len(str(err.value)) < 600, case


@pytest.mark.parametrize(("entry", "line"), [
    ("numpy - [pandas", 3), ("- numpy", 3), ("numpy pandas scipy extra", 3), ("numpy; rm -rf /", 3),
    ("numpy >=", 3), ("[pandas]", 3),
])
def test_malformed_conda_dependency_names_file_line_and_entry(tmp_path: Path, entry: str, line: int) -> None:
    quoted = entry.replace("'", "''")
    write(tmp_path, {"binder/environment.yml": f"name: x\ndependencies:\n  - '{quoted}'\n"})
    with pytest.raises(RecipeError) as err:
        derive(RepoTree.scan(tmp_path), name="x", source=SRC)
    assert err.value.message == f"binder/environment.yml:{line}: dependency {entry!r} is not a conda match spec"
    assert "name>=1.2,<2" in err.value.hint


def test_the_unquoted_malformed_list_from_the_issue(tmp_path: Path) -> None:
    write(tmp_path, {"environment.yml": "dependencies:\n  - numpy - [pandas\n"})
    with pytest.raises(RecipeError, match=r"^environment.yml:2: "):
        derive(RepoTree.scan(tmp_path), name="x", source=SRC)


@pytest.mark.parametrize("spec", [
    "numpy", "numpy=1.18", "numpy==1.18.1", "numpy>=1.18,<2", "numpy 1.18.*", "numpy 1.18 py38_0",
    "numpy=1.18=py38_0", "conda-forge::numpy", "conda-forge/linux-64::numpy>=1", "python>=3.9,<3.11",
    "numpy[version='>=1.18',build=py38*]", "numpy >=1.18", "python=3.8|3.9", "numpy!=1.19", "cryptography * *_0",
    "python=3.8.5=h7579374_1", "jupyterlab>=3.0.0a1", "_libgcc_mutex", "numpy >= 1.18, <2",
])
def test_conda_match_specs_conda_accepts(spec: str) -> None:
    assert is_match_spec(spec)

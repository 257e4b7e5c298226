"""Which CPython minors a wheel tag serves on linux x86_64 (glibc 2.28), and release grouping."""

from __future__ import annotations

import pytest
from packaging.tags import Tag

from imagefactory.recipe.index import IndexFile
from imagefactory.recipe.pyversions import admitted
from imagefactory.recipe.wheels import fits, release


@pytest.mark.parametrize(("tag", "minor", "ok"), [
    (("cp38", "cp38", "manylinux1_x86_64"), "3.8", True),
    (("cp38", "cp38", "manylinux1_x86_64"), "3.9", False),
    (("cp37", "cp37m", "manylinux2010_x86_64"), "3.7", True),
    (("cp37", "abi3", "manylinux_2_28_x86_64"), "3.12", True),
    (("cp39", "abi3", "manylinux_2_17_x86_64"), "3.8", False),
    (("cp310", "cp310", "manylinux_2_31_x86_64"), "3.10", False),
    (("cp310", "cp310", "musllinux_1_1_x86_64"), "3.10", False),
    (("cp310", "cp310", "manylinux2014_aarch64"), "3.10", False),
    (("cp310", "cp310", "win_amd64"), "3.10", False),
    (("py3", "none", "manylinux1_x86_64"), "3.13", True),
    (("py36", "none", "manylinux1_x86_64"), "3.11", True),
    (("cp311", "none", "manylinux2014_x86_64"), "3.11", True),
    (("cp311", "none", "manylinux2014_x86_64"), "3.12", False),
    (("py3", "none", "any"), "3.8", False),
])
def test_fits(tag: tuple[str, str, str], minor: str, ok: bool) -> None:
    assert fits(Tag(*tag), minor) is ok


def test_release_groups_by_version_and_reads_requires_python() -> None:
    files = (IndexFile("numpy-1.18.1-cp38-cp38-manylinux1_x86_64.whl", ">=3.5"),
             IndexFile("numpy-1.18.1.zip", ">=3.5"),
             IndexFile("numpy-1.26.4-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", ">=3.9"),
             IndexFile("garbage.exe"))
    rel = release(files, "1.18.1")
    assert rel is not None and rel.compiled and rel.sdist and rel.requires_python == ">=3.5"
    assert rel.minors() == ("3.8",)
    assert release(files, "2.0") is None
    sdist_only = release((IndexFile("pydotplus-2.0.2.tar.gz"),), "2.0.2")
    assert sdist_only is not None and not sdist_only.compiled


@pytest.mark.parametrize(("spec", "minors"), [
    (">=3.9,<3.11", ("3.9", "3.10")),
    (">=3.7.1", ("3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13")),
    ("==3.8.*|==3.10.*", ("3.8", "3.10")),
    ("~=3.7.0", ("3.7",)),
    ("<3", ()),
])
def test_admitted(spec: str, minors: tuple[str, ...]) -> None:
    assert admitted(spec, tuple(f"3.{m}" for m in range(6, 14))) == minors

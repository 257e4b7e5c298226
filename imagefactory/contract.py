"""Where the image contract lives: the Packer templates, provisioning scripts and files a bake uses.

They ship with the package (the source tree's top-level `packer/` folder, installed as the package
`imagefactory.contract_data`) and are found through importlib.resources, so an installed factory works
from any folder. A factory home may override them with its own `packer/` folder (it needs at least
`packer/templates/`).
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from imagefactory.errors import FactoryError

PARTS = ("templates", "scripts", "files")


def shipped() -> Path:
    """The folder holding templates/, scripts/ and files/ as installed with the package."""
    found = resources.files("imagefactory.contract_data")
    if not isinstance(found, Path) or not all((found / part).is_dir() for part in PARTS):
        raise FactoryError(f"the installed imagefactory has no usable Packer contract at {found}",
                           "reinstall it from a wheel or the source tree (pip install imagefactory)")
    return found


def packer_dir(home_root: Path) -> Path:
    """A home's own packer/ folder when it has templates, else the shipped one."""
    own = home_root / "packer"
    return own if (own / "templates").is_dir() else shipped()


def digest(folder: Path) -> str:
    """sha256 over the contract's files as a bake reads them: every file under templates/, scripts/ and
    files/ (relative path, executable bit and bytes, in sorted order). Caches such as __pycache__ are left out."""
    h = hashlib.sha256()
    for part in PARTS:
        root = folder / part
        if not root.is_dir():
            continue
        for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            h.update(path.relative_to(folder).as_posix().encode() + b"\0")
            h.update(b"x" if path.stat().st_mode & 0o111 else b"-")
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + h.hexdigest()

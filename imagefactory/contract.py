"""Where the image contract lives: the Packer templates, provisioning scripts and files a bake uses.

They ship with the package (the source tree's top-level `packer/` folder, installed as the package
`imagefactory.contract_data`) and are found through importlib.resources, so an installed factory works
from any folder. A factory home may override them with its own `packer/` folder (it needs at least
`packer/templates/`).
"""

from __future__ import annotations

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

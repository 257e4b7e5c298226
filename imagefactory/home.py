"""Where things live: the factory home (the user's GitOps repo) and the per-machine state beside it.

    <home>/catalog.yaml          real (AWS) builds, committed
    <home>/recipes/NAME.yaml     recipes, committed, the user's to edit
    <home>/.builds/              rendered templates and Packer logs of AWS builds (git-ignored)
    <home>/.sandbox/             everything of the local sandbox (git-ignored), kept apart from real
                                 results: the emulator's state, its own catalog.yaml, its build dirs
    <home>/.cache/               repository clones and package-index answers

The home is $IMAGEFACTORY_HOME, else the nearest folder upwards from the cwd holding catalog.yaml;
outside any home a command says to make one (`imagefactory init`) and never writes into a random folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from imagefactory.errors import HomeNotFound, RecipeError
from imagefactory.names import check_name
from imagefactory.result import Result

SOURCE_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def recipes_dir(self) -> Path:
        return self.root / "recipes"

    @property
    def sandbox_dir(self) -> Path:
        return self.root / ".sandbox"

    @property
    def emulator_dir(self) -> Path:
        return self.sandbox_dir / "emulator"

    @property
    def cache_dir(self) -> Path:
        return self.root / ".cache"

    @property
    def packer_dir(self) -> Path:
        """The home's own packer/ folder (templates, scripts, files) if it has one, else the shipped one."""
        from imagefactory.contract import packer_dir

        return packer_dir(self.root)

    def catalog_path(self, target: str) -> Path:
        return self.sandbox_dir / "catalog.yaml" if target == "sandbox" else self.root / "catalog.yaml"

    def builds_dir(self, target: str) -> Path:
        return self.sandbox_dir / "builds" if target == "sandbox" else self.root / ".builds"

    def recipe_path(self, name: str) -> Path:
        return self.recipes_dir / f"{check_name(name, 'recipe name', RecipeError)}.yaml"


def find_home(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Home:
    env = os.environ if env is None else env
    if env.get("IMAGEFACTORY_HOME"):
        return Home(Path(env["IMAGEFACTORY_HOME"]).resolve())
    start = (cwd or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "catalog.yaml").is_file():
            return Home(folder)
    raise HomeNotFound(f"no factory home here: no catalog.yaml in {start} or above, and IMAGEFACTORY_HOME is not set",
                       "make one with 'imagefactory init' (or 'invoke init'), or set IMAGEFACTORY_HOME")


IGNORED = (".sandbox/", ".builds/", ".cache/", "*.lock", "catalog.yaml.prev", "/classes/")


def make_home(root: Path | None = None, env: Mapping[str, str] | None = None) -> Result:
    """Make `root` (default: $IMAGEFACTORY_HOME, else the cwd) a factory home: an empty catalog.yaml,
    recipes/, a .gitignore for per-machine state. Idempotent: what exists is kept; a .gitignore only
    gains the lines it lacks."""
    from imagefactory import catalog
    from imagefactory.files import atomic_write

    env = os.environ if env is None else env
    home = Home((root or Path(env.get("IMAGEFACTORY_HOME") or ".")).resolve())
    made: list[str] = []
    catalog_file = home.catalog_path("aws")
    if not catalog_file.exists():
        catalog.ensure_file(catalog_file)
        made.append(catalog_file.name)
    if not home.recipes_dir.is_dir():
        home.recipes_dir.mkdir(parents=True)
        made.append("recipes/")
    ignore = home.root / ".gitignore"
    text = ignore.read_text() if ignore.is_file() else ""
    missing = [line for line in IGNORED if line not in text.splitlines()]
    if missing:
        atomic_write(ignore, text + ("\n" if text and not text.endswith("\n") else "") + "\n".join(missing) + "\n")
        made.append(f".gitignore ({', '.join(missing)})")
    data = {"home": str(home.root), "created": made}
    result = Result(data, f"factory home {home.root}: " + (f"made {', '.join(made)}" if made else "already complete"))
    if not made:
        return result.skipped(str(home.root), "already a factory home; nothing changed")
    return result.note("next: imagefactory bake --repo PATH-OR-URL (or owner/name on GitHub)")


def user_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Machine-wide cache for large shared things (the sandbox base rootfs)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(env.get("IMAGEFACTORY_CACHE", str(Path(base) / "imagefactory")))


def rootfs_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the sandbox's Debian base rootfs is cached (made once per machine)."""
    return user_cache_dir(env) / "rootfs"

"""The catalog: which images exist, their builds and AMIs per region, and the `latest` of each.

Pure model (`Catalog`, `ImageEntry`, `Build`, `record`) plus one effectful pair: `load` and `update`.
`update` takes an exclusive lock on `<catalog>.lock`, re-reads the file, applies a pure function and
writes the result atomically (temp file in the same folder, fsync, os.replace, fsync of the folder), so
concurrent bakes of different images all land and a crash never leaves a half-written catalog.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, YAMLError

from imagefactory.errors import CatalogError
from imagefactory.files import atomic_write, locked

CATALOG_VERSION = 1
STATUSES = ("available", "failed", "interrupted")
HEADER = ("# imagefactory catalog: written by the factory under a lock; safe to read, diff and commit.\n"
          "# Sandbox builds are kept in .sandbox/catalog.yaml, never here.\n")


@dataclass(frozen=True)
class Build:
    id: str
    created: str
    status: str
    target: str
    account: str
    commit: str
    ref: str | None
    recipe_digest: str
    amis: dict[str, str] = field(default_factory=dict)
    base_ami: dict[str, str] = field(default_factory=dict)
    base_ami_name: str | None = None
    python: str | None = None
    python_override: bool = False
    provisioned: bool = True
    packer_version: str | None = None
    factory_version: str | None = None
    build_dir: str | None = None
    error: str | None = None
    image_manifest: dict[str, Any] | None = None
    shared_with: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["shared_with"] = list(self.shared_with)
        return {k: v for k, v in data.items() if v not in (None, [], {})}  # False and 0 are kept

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> Build:
        known = set(cls.__dataclass_fields__)
        missing = [k for k in ("id", "created", "status", "target", "commit") if k not in data]
        if missing:
            raise CatalogError(f"{where}: build is missing {', '.join(missing)}", "restore the file from git")
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("account", "")
        values.setdefault("ref", None)
        values.setdefault("recipe_digest", "")
        values["shared_with"] = tuple(values.get("shared_with") or ())
        values["amis"] = dict(values.get("amis") or {})
        values["base_ami"] = dict(values.get("base_ami") or {})
        return cls(**values)


@dataclass(frozen=True)
class ImageEntry:
    name: str
    repo: str
    recipe: str
    recipe_digest: str
    latest: str | None = None
    builds: tuple[Build, ...] = ()

    def build(self, build_id: str) -> Build | None:
        return next((b for b in self.builds if b.id == build_id), None)

    def latest_build(self) -> Build | None:
        return self.build(self.latest) if self.latest else None


@dataclass(frozen=True)
class Catalog:
    images: dict[str, ImageEntry] = field(default_factory=dict)

    def image(self, name: str) -> ImageEntry:
        if name not in self.images:
            known = ", ".join(sorted(self.images)) or "none yet"
            raise CatalogError(f"no image named {name!r} in the catalog", f"known images: {known}")
        return self.images[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "catalog_version": CATALOG_VERSION,
            "images": {
                name: {
                    "repo": e.repo,
                    "recipe": e.recipe,
                    "recipe_digest": e.recipe_digest,
                    "latest": e.latest,
                    "builds": [b.to_dict() for b in e.builds],
                }
                for name, e in sorted(self.images.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Catalog:
        data = migrate(data, where)
        images = {}
        for name, e in (data.get("images") or {}).items():
            if not isinstance(e, dict):
                raise CatalogError(f"{where}: images.{name} must be a mapping", "restore the file from git")
            builds = tuple(Build.from_dict(b, f"{where}: images.{name}.builds") for b in e.get("builds") or [])
            images[name] = ImageEntry(name=name, repo=str(e.get("repo", "")), recipe=str(e.get("recipe", "")),
                                      recipe_digest=str(e.get("recipe_digest", "")), latest=e.get("latest"),
                                      builds=builds)
        return cls(images=images)


def migrate(data: Any, where: str) -> dict[str, Any]:
    """Bring an older catalog mapping up to CATALOG_VERSION (version 1 is the first; nothing to do yet)."""
    if data is None:
        return {"catalog_version": CATALOG_VERSION, "images": {}}
    if not isinstance(data, dict):
        raise CatalogError(f"{where}: the top level must be a mapping", "restore the file from git")
    version = data.get("catalog_version", CATALOG_VERSION)
    if not isinstance(version, int) or version > CATALOG_VERSION:
        raise CatalogError(f"{where}: catalog_version {version!r} is newer than this factory reads "
                           f"({CATALOG_VERSION})", "upgrade imagefactory")
    return data


def record(catalog: Catalog, *, name: str, repo: str, recipe: str, recipe_digest: str, build: Build) -> Catalog:
    """The catalog with `build` added to image `name`; an available build becomes its `latest`."""
    entry = catalog.images.get(name) or ImageEntry(name=name, repo=repo, recipe=recipe, recipe_digest=recipe_digest)
    builds = (*(b for b in entry.builds if b.id != build.id), build)
    latest = build.id if build.status == "available" else entry.latest
    entry = replace(entry, repo=repo, recipe=recipe, recipe_digest=recipe_digest, latest=latest, builds=builds)
    return Catalog(images={**catalog.images, name: entry})


def _yaml() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[attr-defined]
    return yaml


def load(path: Path) -> Catalog:
    if not path.exists():
        return Catalog()
    try:
        data = _yaml().load(path.read_text())
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise CatalogError(f"{path}:{line} is not valid YAML", "restore the file from git") from None
    return Catalog.from_dict(data, str(path))


def dump(catalog: Catalog) -> str:
    buf = io.StringIO()
    _yaml().dump(catalog.to_dict(), buf)
    return HEADER + buf.getvalue()


def update(path: Path, change: Callable[[Catalog], Catalog]) -> Catalog:
    """Lock, re-read, apply `change`, write atomically. Returns the written catalog."""
    with locked(path):
        new = change(load(path))
        atomic_write(path, dump(new))
    return new


def ensure_file(path: Path) -> None:
    """Create an empty catalog if there is none (never touches an existing one)."""
    with locked(path):
        if not path.exists():
            atomic_write(path, dump(Catalog()))

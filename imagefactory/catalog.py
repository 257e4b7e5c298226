"""The catalog: which images exist, their builds and AMIs per region, and the `latest` of each.

Pure model (`Catalog`, `ImageEntry`, `Build`, `record`, `forget_build`) plus one effectful pair: `load`
and `update`. `load` validates the whole file on every read: against `schemas/catalog.schema.json` (types,
required build fields, known statuses), then the rules a schema cannot state (each `latest` names a build
of its image, build ids are unique); every error is one line naming the file, the line and the fix.
`update` takes an exclusive lock on `<catalog>.lock`, re-reads (so validates) the file, applies a pure
function, validates the result, keeps the file as it was in `<catalog>.prev`, and writes the result
atomically (`imagefactory.files.atomic_write`): concurrent bakes of different images all land, a crash
never leaves a half-written catalog, a catalog that fails validation is never written over, and a bad
edit can be undone from `.prev` (or git). It also refuses to write when the file changed on disk between
its read and its write (a hand edit in that instant). A catalog shortened by hand that is still valid
cannot be told from one shortened on purpose: git and `.prev` hold what it was.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from imagefactory.documents import HOME_LIMITS, line_at, load_yaml, plain
from imagefactory.errors import CatalogError
from imagefactory.files import atomic_write, locked
from imagefactory.schemas import check, schema

CATALOG_VERSION = 1
STATUSES: tuple[str, ...] = tuple(schema("catalog")["$defs"]["build"]["properties"]["status"]["enum"])
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
    contract_digest: str | None = None  # imagefactory.contract.digest of the packer/ folder the build used
    build_dir: str | None = None
    error: str | None = None
    image_manifest: dict[str, Any] | None = None
    shared_with: tuple[str, ...] = ()
    shares: tuple[dict[str, Any], ...] = ()  # per class and region, written by imagefactory.classes.record
    parent_build: str | None = None
    # retention (imagefactory.prune): per region, when its AMI was deprecated / deregistered, the AMI a
    # deregistered region held (gone from `amis`), and snapshots whose deletion is still to be retried
    deprecated_at: dict[str, str] = field(default_factory=dict)
    deregistered_at: dict[str, str] = field(default_factory=dict)
    retired_amis: dict[str, str] = field(default_factory=dict)
    snapshots_left: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["shared_with"] = list(self.shared_with)
        data["shares"] = [dict(s) for s in self.shares]
        data["snapshots_left"] = {r: list(ids) for r, ids in self.snapshots_left.items() if ids}
        return {k: v for k, v in data.items() if v not in (None, [], {})}  # False and 0 are kept

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Build:
        """A build from a mapping that passed the schema (unknown fields are dropped)."""
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("account", "")
        values.setdefault("ref", None)
        values.setdefault("recipe_digest", "")
        values["shared_with"] = tuple(values.get("shared_with") or ())
        values["shares"] = tuple(dict(s) for s in values.get("shares") or ())
        values["amis"] = dict(values.get("amis") or {})
        values["base_ami"] = dict(values.get("base_ami") or {})
        for name in ("deprecated_at", "deregistered_at", "retired_amis"):
            values[name] = dict(values.get(name) or {})
        values["snapshots_left"] = {r: tuple(ids) for r, ids in (values.get("snapshots_left") or {}).items()}
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
    def from_dict(cls, data: dict[str, Any]) -> Catalog:
        """The catalog of a plain mapping that passed `validate`."""
        images = {}
        for name, e in (data.get("images") or {}).items():
            images[name] = ImageEntry(name=name, repo=e["repo"], recipe=e["recipe"], recipe_digest=e["recipe_digest"],
                                      latest=e.get("latest"), builds=tuple(Build.from_dict(b) for b in e["builds"]))
        return cls(images=images)


def validate(doc: Any, where: str) -> dict[str, Any]:
    """Check a loaded catalog document (plain or round trip, for line numbers); returns it as plain data.
    Raises CatalogError naming `where`, the line and the field."""
    if doc is None:
        return {"catalog_version": CATALOG_VERSION, "images": {}}
    if isinstance(doc, dict):
        version = doc.get("catalog_version", CATALOG_VERSION)
        if isinstance(version, int) and not isinstance(version, bool) and version > CATALOG_VERSION:
            raise CatalogError(f"{where}: catalog_version {version!r} is newer than this factory reads "
                               f"({CATALOG_VERSION})", "upgrade imagefactory")
    check(doc, "catalog", where, CatalogError)
    for name, entry in (doc.get("images") or {}).items():
        ids: set[str] = set()
        for i, build in enumerate(entry["builds"]):
            if build["id"] in ids:
                line = line_at(doc, ["images", name, "builds", i, "id"])
                raise CatalogError(f"{_at(where, line)}: field 'images.{name}.builds[{i}].id' repeats build id "
                                   f"{build['id']!r}", "each build id appears once per image")
            ids.add(build["id"])
        if entry["latest"] is not None and entry["latest"] not in ids:
            line = line_at(doc, ["images", name, "latest"])
            raise CatalogError(f"{_at(where, line)}: field 'images.{name}.latest' names build {entry['latest']!r}, "
                               "which is not among its builds", "point it at one of its builds, or null")
    return migrate(plain(doc))


def _at(where: str, line: int | None) -> str:
    return f"{where}:{line}" if line else where


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring an older catalog mapping up to CATALOG_VERSION (version 1 is the first; nothing to do yet)."""
    return data


def record(catalog: Catalog, *, name: str, repo: str, recipe: str, recipe_digest: str, build: Build) -> Catalog:
    """The catalog with `build` added to image `name`; an available build becomes its `latest`."""
    entry = catalog.images.get(name) or ImageEntry(name=name, repo=repo, recipe=recipe, recipe_digest=recipe_digest)
    builds = (*(b for b in entry.builds if b.id != build.id), build)
    latest = build.id if build.status == "available" else entry.latest
    entry = replace(entry, repo=repo, recipe=recipe, recipe_digest=recipe_digest, latest=latest, builds=builds)
    return Catalog(images={**catalog.images, name: entry})


def forget_build(catalog: Catalog, *, name: str, build_id: str) -> Catalog:
    """The catalog without build `build_id` of image `name`; `latest` moves to the newest available build left."""
    entry = catalog.image(name)
    builds = tuple(b for b in entry.builds if b.id != build_id)
    latest = entry.latest
    if latest == build_id:
        latest = next((b.id for b in reversed(builds) if b.status == "available"), None)
    return Catalog(images={**catalog.images, name: replace(entry, builds=builds, latest=latest)})


def _yaml() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[attr-defined]
    yaml.representer.ignore_aliases = lambda _data: True  # the reader refuses aliases: never write one
    return yaml


def previous_path(path: Path) -> Path:
    """Where `update` keeps the catalog as it was before its last write."""
    return path.with_name(path.name + ".prev")


def restore_hint(path: Path) -> str:
    prev = previous_path(path)
    if prev.is_file():
        return (f"fix that line, or undo the last change with 'cp {prev} {path}' (the catalog before the "
                f"factory's last write) or from git ('git checkout -- {path.name}')")
    return f"fix that line, or restore the file from git ('git checkout -- {path.name}')"


def parse(text: str, path: Path) -> Catalog:
    """The catalog in `text` (read from `path`), validated; errors say how to restore the file.
    Read with the fast loader first; only a catalog that fails is read again for its line numbers."""
    try:
        try:
            data = validate(load_yaml(text, str(path), limits=HOME_LIMITS, error=CatalogError, lines=False), str(path))
        except CatalogError:
            data = validate(load_yaml(text, str(path), limits=HOME_LIMITS, error=CatalogError), str(path))
        return Catalog.from_dict(data)
    except CatalogError as exc:
        hint = exc.hint if "newer" in exc.message else restore_hint(path)
        raise CatalogError(exc.message, hint) from None


def load(path: Path) -> Catalog:
    if not path.exists():
        return Catalog()
    return parse(_text(path.read_bytes(), path), path)


def _text(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path} is not UTF-8 text (at byte offset {exc.start})", restore_hint(path)) from None


def dump(catalog: Catalog) -> str:
    buf = io.StringIO()
    _yaml().dump(catalog.to_dict(), buf)
    return HEADER + buf.getvalue()


def update(path: Path, change: Callable[[Catalog], Catalog]) -> Catalog:
    """Lock, re-read and validate, apply `change`, validate the result, keep the old file as `.prev`, write
    atomically. Returns the written catalog. Nothing is written when any step fails."""
    with locked(path):
        before = path.read_bytes() if path.exists() else None
        new = change(parse(_text(before, path), path) if before is not None else Catalog())
        try:
            validate(new.to_dict(), str(path))
        except CatalogError as exc:
            raise CatalogError(f"refusing to write {path}: the new catalog would be invalid ({exc.message})",
                               "this is a bug in imagefactory; the file is unchanged") from None
        if before is not None:
            if path.read_bytes() != before:
                raise CatalogError(f"{path} changed on disk while the factory was updating it",
                                   "run the command again; the file is unchanged")
            atomic_write(previous_path(path), before)
        atomic_write(path, dump(new))
    return new


def ensure_file(path: Path) -> None:
    """Create an empty catalog if there is none (never touches an existing one)."""
    with locked(path):
        if not path.exists():
            atomic_write(path, dump(Catalog()))

"""Views of the catalogs for people and scripts: one row per image and target (`rows`, `table`), or one
image in full (`show`, and `show_yaml` for its text), each build with what its smoke test measured in the
image (`smoke`: the code's imports that worked and failed, the notebooks run and whether they passed), read
from the build's image manifest.

Real builds come from catalog.yaml, sandbox builds from .sandbox/catalog.yaml; every row says which.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML

from imagefactory import catalog
from imagefactory.errors import CatalogError
from imagefactory.home import Home

TARGETS = ("aws", "sandbox")


def rows(home: Home) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for target in TARGETS:
        for name, entry in sorted(catalog.load(home.catalog_path(target)).images.items()):
            latest = entry.latest_build()
            out.append({
                "image": name,
                "target": target,
                "repo": entry.repo,
                "latest": entry.latest,
                "created": latest.created if latest else None,
                "amis": dict(latest.amis) if latest else {},
                "builds": len(entry.builds),
                "failed": sum(1 for b in entry.builds if b.status in ("failed", "interrupted")),
                "catalog": str(home.catalog_path(target)),
            })
    return out


def table(items: list[dict[str, Any]]) -> str:
    if not items:
        return "the catalog is empty: bake an image with 'invoke bake --repo PATH-OR-URL'"
    header = ("IMAGE", "TARGET", "LATEST BUILD", "CREATED", "BUILDS", "AMIS")
    lines = [header]
    for r in items:
        amis = " ".join(f"{k}:{v}" for k, v in sorted(r["amis"].items())) or "-"
        lines.append((r["image"], r["target"], r["latest"] or "-", r["created"] or "-",
                      f"{r['builds']} ({r['failed']} failed)", amis))
    widths = [max(len(row[i]) for row in lines) for i in range(len(header) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
                     for row in lines)


def show(home: Home, name: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for target in TARGETS:
        cat = catalog.load(home.catalog_path(target))
        if name in cat.images:
            entry = cat.to_dict()["images"][name]
            entry["builds"] = [with_smoke(b) for b in entry.get("builds") or ()]
            found[target] = entry | {"catalog": str(home.catalog_path(target))}
    if not found:
        known = sorted({r["image"] for r in rows(home)})
        raise CatalogError(f"no image named {name!r} in the catalog",
                           f"known images: {', '.join(known) or 'none yet'}")
    return {"image": name, **found}


def smoke(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the smoke test measured, from an image manifest (if_manifest.py): imports {ok, failed: [module]}
    and notebooks [{path, passed, seconds}]; a stage that recorded nothing is None."""
    imports = manifest.get("imports")
    notebooks = manifest.get("notebooks")
    return {
        "imports": None if imports is None else {
            "ok": imports.get("ok", 0),
            "failed": [f"{f['module']}" + (" (fails the bake)" if f.get("fatal") else " (warning)")
                       for f in imports.get("failed") or ()]},
        "notebooks": None if notebooks is None else [
            {"path": n["path"], "passed": bool(n.get("ok")), "seconds": n.get("seconds")} for n in notebooks],
    }


def with_smoke(build: dict[str, Any]) -> dict[str, Any]:
    """A build's catalog record with `smoke` put before its image manifest (when it has one)."""
    if not build.get("image_manifest"):
        return build
    out: dict[str, Any] = {}
    for key, value in build.items():
        if key == "image_manifest":
            out["smoke"] = smoke(value)
        out[key] = value
    return out


def show_yaml(data: dict[str, Any]) -> str:
    """`show`'s answer as YAML text for people: block style, keys in the catalog's order, no aliases."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[attr-defined]
    yaml.representer.ignore_aliases = lambda _data: True
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue().rstrip()

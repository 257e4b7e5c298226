"""The class commands' library side: `new_class` (class.new), `share_image` / `unshare_image`, `status`
(verified against AWS, not only the catalog) and `end` (unshare every image of a class whose term is over).
Each returns plain data and a text; the CLI module (`imagefactory.cli.classes`) renders them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from imagefactory import catalog as catalog_mod
from imagefactory.classes import aws, record
from imagefactory.classes import roster as rosters
from imagefactory.classes.plan import ORG, OU, USER, wanted
from imagefactory.classes.share import ShareReport, converge
from imagefactory.cloud.target import SANDBOX_NOTICE, Target, check_regions, choose_target, open_target
from imagefactory.errors import ClassError
from imagefactory.home import Home


def _target(home: Home, sandbox: bool, progress: Callable[[str], None]) -> Target:
    kind = choose_target(sandbox=sandbox)
    target = open_target(kind, home.emulator_dir)
    if target.sandbox:
        progress(SANDBOX_NOTICE.format(endpoint=target.endpoint, catalog=home.catalog_path("sandbox")))
    return target


def new_class(home: Home, name: str, *, accounts_file: Path | None, regions: tuple[str, ...], title: str | None,
              start: date | None, weeks: int, organization: str | None, ous: tuple[str, ...], kms_key: str | None,
              force: bool) -> tuple[dict[str, Any], str]:
    """Write classes/NAME.yaml from a CSV of id[,label] rows (labels stay in that file only)."""
    check_regions(regions)
    accounts: list[dict[str, str]] = []
    if accounts_file is not None:
        try:
            text = accounts_file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ClassError(f"cannot read {accounts_file}: {exc}", "give a UTF-8 CSV of id[,label] rows") from None
        accounts = rosters.accounts_from_csv(text, str(accounts_file))
    first = start or datetime.now(UTC).date()
    doc = rosters.new_document(title=title or name, regions=regions, accounts=accounts, start=first,
                               end=first + timedelta(weeks=weeks), organization=organization, ous=ous,
                               kms_key=kms_key)
    roster = rosters.write_new(home.root, name, doc, force=force)
    data = {"class": name, "path": str(roster.path), "accounts": len(roster.who.accounts),
            "organization": roster.who.organization, "ous": list(roster.who.ous), "regions": list(roster.regions),
            "term": {"start": str(roster.term_start), "end": str(roster.term_end)}}
    return data, (f"wrote {roster.path}: {len(roster.who.accounts)} accounts, regions {', '.join(roster.regions)}, "
                  f"term {roster.term_start} to {roster.term_end} (git-ignored: it holds labels)")


def share_image(home: Home, image: str, class_name: str, *, build: str | None = None, dry_run: bool = False,
                sandbox: bool = False, unshare: bool = False,
                progress: Callable[[str], None] = lambda _l: None) -> ShareReport:
    roster = rosters.load(home.root, class_name)
    target = _target(home, sandbox, progress)
    return converge(target, home.catalog_path(target.kind), image, roster, build_id=build, dry_run=dry_run,
                    unshare=unshare)


def status(home: Home, class_name: str, *, sandbox: bool = False,
           progress: Callable[[str], None] = lambda _l: None) -> tuple[dict[str, Any], str]:
    """Per image and region, what each roster entry can launch now, read from AWS (ids, never labels)."""
    roster = rosters.load(home.root, class_name)
    target = _target(home, sandbox, progress)
    cat = catalog_mod.load(home.catalog_path(target.kind))
    rows: list[dict[str, Any]] = []
    for entry, build in record.shared_builds(cat, class_name):
        for region, rec in sorted(record.shares_of(build, class_name).items()):
            ec2 = target.client("ec2", region)
            exists = aws.image(ec2, rec["ami"]) is not None
            have = aws.launch_entries(ec2, rec["ami"]) if exists else frozenset()
            grants: set[str] = set()
            if rec.get("kms_key"):
                listed = target.client("kms", region).list_grants(KeyId=rec["kms_key"]).get("Grants", [])
                grants = {g["GranteePrincipal"].split(":")[4] for g in listed
                          if g.get("Name") == aws.grant_name(class_name) and g["GranteePrincipal"].count(":") >= 5}
            for kind, value in sorted(wanted(roster.who)):
                key_ok = not rec.get("kms_key") or kind != USER or value in grants
                rows.append({"image": entry.name, "build": build.id, "region": region, "ami": rec["ami"],
                             "who": value, "kind": {USER: "account", ORG: "organization", OU: "ou"}[kind],
                             "can_launch": exists and (kind, value) in have and key_ok})
    ready = sum(r["can_launch"] for r in rows)
    lines = [f"class {class_name}: {ready} of {len(rows)} roster entries can launch"]
    lines += [f"  {r['image']} {r['region']} {r['ami']} {r['kind']} {r['who']}: "
              f"{'can launch' if r['can_launch'] else 'CANNOT launch'}" for r in rows]
    if not rows:
        lines.append(f"  nothing shared with class {class_name} yet: invoke share IMAGE --class {class_name}")
    return {"class": class_name, "entries": rows}, "\n".join(lines)


def end(home: Home, class_name: str, *, sandbox: bool = False, force: bool = False, today: date | None = None,
        progress: Callable[[str], None] = lambda _l: None) -> list[ShareReport]:
    """Unshare every image shared with a class whose term is over (`force`: before its end)."""
    roster = rosters.load(home.root, class_name)
    if not roster.term_over(today or datetime.now(UTC).date()) and not force:
        raise ClassError(f"class {class_name}'s term ends on {roster.term_end}", "wait until then, or pass --force")
    target = _target(home, sandbox, progress)
    path = home.catalog_path(target.kind)
    shared = [(e.name, b.id) for e, b in record.shared_builds(catalog_mod.load(path), class_name)]
    return [converge(target, path, image, roster, build_id=build, unshare=True) for image, build in shared]


def handout(home: Home, image: str, class_name: str, *, sandbox: bool = False,
            progress: Callable[[str], None] = lambda _l: None) -> tuple[dict[str, Any], str]:
    """Write handouts/NAME/index.html and README.md for the students (no label, no account id)."""
    from imagefactory.classes import handout as pages

    roster = rosters.load(home.root, class_name)
    target = _target(home, sandbox, progress)
    facts = pages.gather(target, catalog_mod.load(home.catalog_path(target.kind)), image, roster)
    data = pages.write(home.root, class_name, facts)
    return data, f"wrote {data['html']} and {data['readme']}"

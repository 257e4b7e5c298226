"""A class roster, `classes/NAME.yaml`: who a class's images are shared with, and where.

The format is described once, in `schemas/class.schema.json`, and checked by the one schema checker
(errors name the file, the line, the field and the fix); the rules a schema cannot state (a term that ends
after it starts, accounts listed once, OUs of the roster's organization, no AWS-managed key, someone to share
with) are checked here. Labels are personal data: `Roster.who` carries none, so nothing built from it
(catalog records, plans, handouts, logs, tags) can hold one; only `labels` reads them, for the instructor.

`from_csv` makes a roster from a CSV of `id[,label]` rows; `write_new` writes it as a new file.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from imagefactory.documents import HOME_LIMITS, clip, dump_yaml, line_at, load_yaml, plain
from imagefactory.errors import ClassError
from imagefactory.files import atomic_write
from imagefactory.names import check_name
from imagefactory.schemas import check

CLASS_VERSION = 1
CLASSES_DIR = "classes"
ACCOUNT_RE = re.compile(r"^\d{12}$")
AWS_MANAGED_ALIAS = "alias/aws/ebs"


@dataclass(frozen=True)
class Who:
    """Who a class shares with: account ids, an organization ARN, OU ARNs. Never labels."""

    accounts: tuple[str, ...] = ()
    organization: str | None = None
    ous: tuple[str, ...] = ()

    def entities(self) -> int:
        """Launch-permission entities this takes (an organization or an OU counts as one)."""
        return len(self.accounts) + (1 if self.organization else 0) + len(self.ous)


@dataclass(frozen=True)
class Roster:
    name: str
    path: Path
    title: str
    term_start: date
    term_end: date
    regions: tuple[str, ...]
    who: Who
    instance_type: str = "t3.large"
    autostop: int = 60
    expected_hours: float = 0.0
    kms_key: str | dict[str, str] | None = None
    allow_copy: bool = False
    labels: dict[str, str] = field(default_factory=dict, repr=False)  # account id -> label: roster only

    def key_for(self, region: str) -> str | None:
        """The class key to encrypt copies with in `region` (an alias, a key ARN), or None when none is set."""
        if isinstance(self.kms_key, dict):
            return self.kms_key.get(region)
        return self.kms_key

    def term_over(self, today: date) -> bool:
        return today > self.term_end


def classes_dir(home_root: Path) -> Path:
    return home_root / CLASSES_DIR


def roster_path(home_root: Path, name: str) -> Path:
    check_name(name, "class name", ClassError)
    return classes_dir(home_root) / f"{name}.yaml"


def load(home_root: Path, name: str) -> Roster:
    path = roster_path(home_root, name)
    if not path.is_file():
        raise ClassError(f"no roster {path}", f"write one with 'invoke class.new {name} --accounts-file FILE.csv "
                                              "--regions REGION'")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ClassError(f"{path} is not UTF-8 text", "save it as UTF-8") from None
    return parse(text, path, name)


def parse(text: str, path: Path, name: str) -> Roster:
    doc = load_yaml(text, str(path), limits=HOME_LIMITS, error=ClassError)
    if isinstance(doc, dict) and doc.get("class_version", CLASS_VERSION) != CLASS_VERSION:
        raise ClassError(f"{_at(doc, path, ['class_version'])}: field 'class_version' is "
                         f"{clip(doc.get('class_version'))}, this factory reads {CLASS_VERSION}",
                         "upgrade imagefactory")
    check(doc, "class", str(path), ClassError)
    return _build(doc, path, name)


def _at(doc: Any, path: Path, where: list[Any]) -> str:
    line = line_at(doc, where)
    return f"{path}:{line}" if line else str(path)


def _day(doc: Any, path: Path, key: str) -> date:
    value = doc["term"][key]
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ClassError(f"{_at(doc, path, ['term', key])}: field 'term.{key}' is not a real date {clip(value)}",
                         "write a quoted date like '2026-03-20'") from None


def _build(doc: Any, path: Path, name: str) -> Roster:
    start, end = _day(doc, path, "start"), _day(doc, path, "end")
    if end < start:
        raise ClassError(f"{_at(doc, path, ['term', 'end'])}: field 'term.end' {end} is before term.start {start}",
                         "swap them or fix the date")
    seen: dict[str, int] = {}
    for i, entry in enumerate(doc.get("accounts") or []):
        if entry["id"] in seen:
            raise ClassError(f"{_at(doc, path, ['accounts', i, 'id'])}: field 'accounts[{i}].id' repeats account "
                             f"{entry['id']} (also accounts[{seen[entry['id']]}])", "list each account once")
        seen[entry["id"]] = i
    org, ous = doc.get("organization"), list(doc.get("ous") or [])
    if org:
        org_id = org.rpartition("/")[2]
        for i, ou in enumerate(ous):
            if ou.split("/")[1] != org_id:
                raise ClassError(f"{_at(doc, path, ['ous', i])}: field 'ous[{i}]' {ou} is not in the roster's "
                                 f"organization {org_id}", "list OUs of that organization, or drop 'organization'")
    if len(set(ous)) != len(ous):
        raise ClassError(f"{path}: field 'ous' lists an OU twice", "list each OU once")
    who = Who(accounts=tuple(seen), organization=org or None, ous=tuple(ous))
    if not who.entities():
        raise ClassError(f"{path}: the roster shares with no one", "add 'accounts', 'organization' or 'ous'")
    kms = plain(doc.get("kms_key"))
    for region, key in (kms.items() if isinstance(kms, dict) else [("", kms)]):
        if key and (key == AWS_MANAGED_ALIAS or key.endswith(":" + AWS_MANAGED_ALIAS)):
            field_name = f"kms_key.{region}" if region else "kms_key"
            raise ClassError(f"{path}: field '{field_name}' is the AWS-managed key aws/ebs, which other accounts "
                             "can never use", "create a customer-managed key (aws kms create-key) and name it here")
    labels = {e["id"]: str(e["label"]) for e in doc.get("accounts") or [] if e.get("label")}
    return Roster(
        name=name, path=path, title=str(doc["title"]), term_start=start, term_end=end,
        regions=tuple(str(r) for r in doc["regions"]), who=who,
        instance_type=str(doc.get("instance_type") or "t3.large"), autostop=int(doc.get("autostop", 60)),
        expected_hours=float(doc.get("expected_hours") or 0), kms_key=kms or None,
        allow_copy=bool(doc.get("allow_copy", False)), labels=labels,
    )


# ------------------------------------------------------------------------------------------- class.new
def accounts_from_csv(text: str, origin: str) -> list[dict[str, str]]:
    """`id[,label]` rows (a header row `id,label` is allowed; blank lines and `#` comments are skipped)."""
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if not cells or not cells[0] or cells[0].startswith("#"):
            continue
        if number == 1 and cells[0].lower() in ("id", "account", "account_id"):
            continue
        account = cells[0]
        if not ACCOUNT_RE.match(account):
            raise ClassError(f"{origin}:{number}: {clip(account)} is not a 12-digit AWS account id",
                             "each row is id[,label], like 210000000001,Ada (keep leading zeros)")
        if account in seen:
            raise ClassError(f"{origin}:{number}: account {account} is listed twice", "list each account once")
        if len(cells) > 2:
            raise ClassError(f"{origin}:{number}: a row has more than two columns", "each row is id[,label]; "
                             "quote a label that holds a comma")
        seen.add(account)
        rows.append({"id": account, **({"label": cells[1]} if len(cells) > 1 and cells[1] else {})})
    return rows


def new_document(*, title: str, regions: tuple[str, ...], accounts: list[dict[str, str]], start: date, end: date,
                 organization: str | None = None, ous: tuple[str, ...] = (), kms_key: str | None = None,
                 instance_type: str = "t3.large", expected_hours: float = 20) -> dict[str, Any]:
    doc: dict[str, Any] = {"class_version": CLASS_VERSION, "title": title,
                           "term": {"start": start.isoformat(), "end": end.isoformat()}, "regions": list(regions),
                           "instance_type": instance_type, "autostop": 60, "expected_hours": expected_hours}
    if accounts:
        doc["accounts"] = accounts
    if organization:
        doc["organization"] = organization
    if ous:
        doc["ous"] = list(ous)
    if kms_key:
        doc["kms_key"] = kms_key
    return doc


HEADER = ("# imagefactory class roster. Labels are personal data: this file is git-ignored (/classes/ in\n"
          "# .gitignore); to commit it anyway, remove that line or 'git add -f' it.\n")


def write_new(home_root: Path, name: str, doc: dict[str, Any], *, force: bool = False) -> Roster:
    """Validate `doc` as a roster and write it to classes/NAME.yaml (0600); an existing one needs `force`."""
    path = roster_path(home_root, name)
    if path.exists() and not force:
        raise ClassError(f"{path} already exists", "edit it, or pass --force to replace it")
    text = HEADER + dump_yaml(doc)
    roster = parse(text, path, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text, mode=0o600)
    return roster

"""The class roster: one schema, errors naming file, line, field and fix; CSV to roster; labels stay put."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from imagefactory.classes import roster
from imagefactory.errors import ClassError

ORG = "arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5"
OU = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-a1b2-students"
GOOD = f"""class_version: 1
title: Hydrology 101
term: {{start: '2026-01-12', end: '2026-03-20'}}
regions: [us-west-2]
accounts:
  - id: '210000000001'
    label: Ada Lovelace
  - id: '210000000002'
organization: {ORG}
ous: [{OU}]
kms_key: alias/imagefactory-class
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "classes").mkdir(exist_ok=True)
    (tmp_path / "classes" / "hydro.yaml").write_text(text)
    return tmp_path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ClassError) as err:
        roster.load(write(tmp_path, text), "hydro")
    return str(err.value)


def test_a_good_roster_loads_and_who_holds_no_label(tmp_path: Path) -> None:
    r = roster.load(write(tmp_path, GOOD), "hydro")
    assert r.who == roster.Who(("210000000001", "210000000002"), ORG, (OU,))
    assert r.who.entities() == 4
    assert r.labels == {"210000000001": "Ada Lovelace"}
    assert "Ada" not in repr(r)
    assert r.term_end == date(2026, 3, 20) and r.key_for("us-west-2") == "alias/imagefactory-class"


@pytest.mark.parametrize(("old", "new", "expected"), [
    (ORG, "o-a1b2c3d4e5", "hydro.yaml:9: field 'organization' has an invalid value 'o-a1b2c3d4e5' "
                          "(an organization ARN: arn:aws:organizations::<12-digit management account>"),
    (OU, "ou-a1b2-students", "hydro.yaml:10: field 'ous[0]' has an invalid value 'ou-a1b2-students' "
                             "(an organizational-unit ARN: arn:aws:organizations::"),
    (OU, "arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5", "field 'ous[0]' has an invalid value"),
    ("'210000000002'", "210000000002", "hydro.yaml:8: field 'accounts[1].id' must be a string, not a whole number "
                                       "(a 12-digit AWS account id, quoted like '210000000001')"),
    ("'210000000002'", "'21000000002'", "field 'accounts[1].id' has an invalid value '21000000002'"),
    ("title:", "titel:", "field 'title' is missing"),
    ("'2026-03-20'", "2026-03-20", "field 'term.end' must be a string"),
    ("'2026-03-20'", "'2025-03-20'", "field 'term.end' 2025-03-20 is before term.start 2026-01-12"),
    ("'210000000002'", "'210000000001'", "field 'accounts[1].id' repeats account 210000000001"),
    ("alias/imagefactory-class", "alias/aws/ebs", "field 'kms_key' is the AWS-managed key aws/ebs"),
    ("class_version: 1", "class_version: 2", "field 'class_version' is 2, this factory reads 1"),
])
def test_a_bad_roster_is_one_line_naming_the_field_and_the_form(tmp_path: Path, old: str, new: str,
                                                                 expected: str) -> None:
    assert old in GOOD
    message = error_of(tmp_path, GOOD.replace(old, new, 1))
    assert expected in message
    assert "\n" not in message


def test_an_ou_of_another_organization_is_refused(tmp_path: Path) -> None:
    other = OU.replace("ou/o-a1b2c3d4e5", "ou/o-zzzzzzzzzz")
    assert "is not in the roster's organization o-a1b2c3d4e5" in error_of(tmp_path, GOOD.replace(OU, other))


def test_a_roster_sharing_with_no_one_is_refused(tmp_path: Path) -> None:
    text = GOOD.split("accounts:")[0]
    assert "shares with no one" in error_of(tmp_path, text)


def test_csv_to_roster_round_trip_keeps_leading_zeros_and_labels(tmp_path: Path) -> None:
    rows = roster.accounts_from_csv("id,label\n012345678901,Ada\n\n# a comment\n210000000002\n", "s.csv")
    assert rows == [{"id": "012345678901", "label": "Ada"}, {"id": "210000000002"}]
    doc = roster.new_document(title="t", regions=("us-west-2",), accounts=rows, start=date(2026, 1, 1),
                              end=date(2026, 2, 1))
    r = roster.write_new(tmp_path, "hydro", doc)
    assert (tmp_path / "classes" / "hydro.yaml").stat().st_mode & 0o777 == 0o600
    again = roster.load(tmp_path, "hydro")
    assert again.who.accounts == ("012345678901", "210000000002") == r.who.accounts
    assert again.labels == {"012345678901": "Ada"}
    with pytest.raises(ClassError, match="already exists"):
        roster.write_new(tmp_path, "hydro", doc)


@pytest.mark.parametrize(("text", "expected"), [
    ("12345,Ada\n", "s.csv:1: '12345' is not a 12-digit AWS account id"),
    ("210000000001\n210000000001\n", "s.csv:2: account 210000000001 is listed twice"),
    ("210000000001,Ada,extra\n", "s.csv:1: a row has more than two columns"),
])
def test_bad_csv_rows_name_the_line(text: str, expected: str) -> None:
    with pytest.raises(ClassError) as err:
        roster.accounts_from_csv(text, "s.csv")
    assert expected in str(err.value)

"""The sharing plan, pure: data in, adds and removes out (no I/O)."""

from __future__ import annotations

import pytest

from imagefactory.classes.plan import (
    BATCH,
    ORG,
    OU,
    QUOTA,
    USER,
    Current,
    Encryption,
    digest,
    needs_copy,
    plan_all,
    plan_region,
    refuse_default_key,
    wanted,
)
from imagefactory.classes.roster import Who
from imagefactory.errors import ClassError

ORG_ARN = "arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5"
OU_ARN = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-a1b2-students"
WHO = Who(("210000000001", "210000000002"), ORG_ARN, (OU_ARN,))


def current(launch: set[tuple[str, str]] = frozenset(), ours: set[str] = frozenset(),  # type: ignore[assignment]
            others: set[str] = frozenset(), copy_users: set[str] = frozenset()) -> Current:  # type: ignore[assignment]
    return Current("us-west-2", "ami-1", frozenset(launch), frozenset(copy_users), frozenset(ours), frozenset(others))


def test_a_first_share_adds_everyone_and_records_them() -> None:
    plan = plan_region(current(), WHO, allow_copy=False)
    assert plan.add == ((ORG, ORG_ARN), (OU, OU_ARN), (USER, "210000000001"), (USER, "210000000002"))
    assert plan.remove == () and plan.copy_add == () and plan.changes == 4
    assert plan.ours_after == {digest(e) for e in wanted(WHO)}


def test_a_second_share_changes_nothing() -> None:
    first = plan_region(current(), WHO, allow_copy=True)
    again = plan_region(current(set(first.after), set(first.ours_after),
                                copy_users={"210000000001", "210000000002"}), WHO, allow_copy=True)
    assert again.changes == 0 and again.after == first.after


def test_a_removed_student_is_removed_but_hand_given_and_other_class_entries_stay() -> None:
    mine = wanted(WHO)
    by_hand, shared_too = (USER, "333333333333"), (USER, "210000000002")
    launch = set(mine) | {by_hand}
    smaller = Who(("210000000001",), ORG_ARN, (OU_ARN,))
    plan = plan_region(current(launch, {digest(e) for e in mine}), smaller, allow_copy=False)
    assert plan.remove == (shared_too,) and by_hand in plan.after
    other_class = plan_region(current(launch, {digest(e) for e in mine}, {digest(shared_too)}), smaller,
                              allow_copy=False)
    assert other_class.remove == ()


def test_unshare_removes_exactly_what_the_class_added() -> None:
    mine = wanted(WHO)
    plan = plan_region(current(set(mine) | {(USER, "333333333333")}, {digest(e) for e in mine}), Who(),
                       allow_copy=False)
    assert set(plan.remove) == mine and plan.after == {(USER, "333333333333")} and plan.ours_after == frozenset()


def test_a_public_ami_is_refused() -> None:
    with pytest.raises(ClassError, match="ami-1 in us-west-2 is public"):
        plan_region(current({("Group", "all")}), WHO, allow_copy=False)


def test_past_the_quota_is_refused_with_the_ou_advice_and_other_regions_go_on() -> None:
    many = Who(tuple(f"{i:012d}" for i in range(QUOTA)), ORG_ARN)
    with pytest.raises(ClassError, match=r"1001 launch permissions, past AWS's quota of 1000.*organizational unit"):
        plan_region(current(), many, allow_copy=False)
    fits = Who(tuple(f"{i:012d}" for i in range(QUOTA)))
    plan = plan_region(current(), fits, allow_copy=False)
    assert [len(b) for b in plan.batches("add")] == [BATCH] * (QUOTA // BATCH)
    both = plan_all([current(), Current("eu-west-1", "ami-2", frozenset({("Group", "all")}))], WHO,
                    allow_copy=False)
    assert isinstance(both["eu-west-1"], ClassError) and not isinstance(both["us-west-2"], ClassError)


def test_copy_permission_only_with_allow_copy_and_taken_back_without() -> None:
    plan = plan_region(current(), WHO, allow_copy=True)
    assert plan.copy_add == ("210000000001", "210000000002")
    mine = {digest(e) for e in wanted(WHO)}
    back = plan_region(current(set(wanted(WHO)), mine, copy_users={"210000000001", "444444444444"}), WHO,
                       allow_copy=False)
    assert back.copy_remove == ("210000000001",) and back.copy_add == ()


def test_encryption_rules() -> None:
    ebs = Encryption(True, "arn:aws:kms:us-west-2:123456789012:key/e", aws_managed=True)
    with pytest.raises(ClassError, match=r"encrypted with the AWS-managed key aws/ebs.*set kms_key"):
        refuse_default_key("demo", "us-west-2", "ami-1", ebs, None)
    refuse_default_key("demo", "us-west-2", "ami-1", ebs, "alias/k")
    refuse_default_key("demo", "us-west-2", "ami-1", Encryption(False), None)
    assert needs_copy(None, None) and needs_copy(ebs, "arn:k") and not needs_copy(Encryption(False), None)
    assert not needs_copy(Encryption(True, "arn:k"), "arn:k")


def test_an_entry_given_by_hand_before_the_class_stays_after_unshare() -> None:
    by_hand = (USER, "210000000001")
    first = plan_region(current({by_hand}), WHO, allow_copy=False)
    assert by_hand not in first.add and digest(by_hand) not in first.ours_after
    gone = plan_region(current(set(first.after), set(first.ours_after)), Who(), allow_copy=False)
    assert gone.after == {by_hand}

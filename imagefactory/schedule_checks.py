"""What a schedule's values from the user may be: a cron expression (five fields GitHub and cron both
accept), an IAM role ARN, what pip installs. Each check returns the value or raises one UsageError naming
the option, the value and the form expected (pure: no I/O)."""

from __future__ import annotations

import re

from imagefactory.errors import UsageError

CRON_FIELDS = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of month", 1, 31, ()),
               ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                                 "dec")),
               ("day of week", 0, 6, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")))
CRON_FORM = 'five fields "MIN HOUR DAY MONTH WEEKDAY", e.g. "0 6 * * 1" (Mondays 06:00)'
_ITEM_RE = re.compile(r"(\*|(?P<low>[0-9a-z]+)(?:-(?P<high>[0-9a-z]+))?)(?:/(?P<step>[0-9]+))?")


def check_cron(value: str, option: str = "--cron") -> str:
    """`value` if it is a five-field cron expression GitHub and cron both accept, else UsageError."""
    if not value.isprintable():
        raise UsageError(f"{option} {value!r} holds a newline or another control character", f"give {CRON_FORM}")
    fields = value.split()
    if len(fields) != 5:
        raise UsageError(f"{option} {value!r} has {len(fields)} fields, not 5", f"give {CRON_FORM}")
    for text, (what, low, high, names) in zip(fields, CRON_FIELDS, strict=True):
        for item in text.lower().split(","):
            problem = _cron_item_problem(item, low, high, names)
            if problem:
                named = f" or {names[0].upper()}-{names[-1].upper()}" if names else ""
                raise UsageError(f"{option} {value!r}: {what} {text!r} {problem}",
                                 f"each field is *, N, A-B, */N, A-B/N or a comma list of them; {what} is "
                                 f"{low}-{high}{named}; e.g. \"0 6 * * 1\" (Mondays 06:00)")
    return " ".join(fields)


def _cron_item_problem(item: str, low: int, high: int, names: tuple[str, ...]) -> str | None:
    match = _ITEM_RE.fullmatch(item)
    if not match:
        return "is not a number, a name, *, a range or a step"
    if match["step"] is not None and int(match["step"]) < 1:
        return "has a step of 0"
    ends = [v for v in (match["low"], match["high"]) if v is not None]
    numbers = []
    for end in ends:
        number = names.index(end) + low if end in names else int(end) if end.isdigit() else None
        if number is None or not low <= number <= high:
            return f"is outside {low}-{high}" if end == item else f"holds {end!r}, outside {low}-{high}"
        numbers.append(number)
    if len(numbers) == 2 and numbers[0] > numbers[1]:
        return "is a range that runs backwards"
    return None


ROLE_ARN_RE = re.compile(r"arn:aws(?:-cn|-us-gov)?:iam::[0-9]{12}:role/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}", re.ASCII)
ROLE_ARN_FORM = "arn:aws:iam::<12-digit account>:role/<name> (the role GitHub's OIDC provider may assume)"


def check_role_arn(value: str) -> str:
    if not ROLE_ARN_RE.fullmatch(value):
        shown = value if len(value) <= 100 else value[:97] + "..."
        raise UsageError(f"--role-arn {shown!r} is not an IAM role ARN", f"give {ROLE_ARN_FORM}")
    return value


def check_install(value: str) -> str:
    """What pip installs in the workflow: "." (the repository itself) or one PEP 508 requirement."""
    from packaging.requirements import InvalidRequirement, Requirement

    if value == ".":
        return value
    try:
        Requirement(value)
    except InvalidRequirement as exc:
        raise UsageError(f"--install {value!r} is not a pip requirement: {exc}",
                         "give '.', 'imagefactory==X.Y.Z' or 'imagefactory @ https://…/imagefactory-X.Y.Z-py3-none-any.whl'"
                         ) from None
    return value

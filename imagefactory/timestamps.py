"""Times as the factory and AWS write them: ISO 8601, in UTC, with a trailing Z. The one reader and writer."""

from __future__ import annotations

from datetime import UTC, datetime

STAMP = "%Y-%m-%dT%H:%M:%SZ"


def parse(text: str) -> datetime:
    """An ISO 8601 time (a trailing Z or an offset; one with neither is UTC) as an aware datetime; ValueError
    when it is not one."""
    when = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def stamp(when: datetime) -> str:
    """`when` (aware) in UTC, to the second, as the catalog and Packer's `deprecate_at` write it."""
    return when.astimezone(UTC).strftime(STAMP)

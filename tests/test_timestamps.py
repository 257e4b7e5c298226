from datetime import UTC, datetime, timedelta, timezone

import pytest

from imagefactory import timestamps


def test_times_read_as_aware_utc_and_written_with_a_z() -> None:
    assert timestamps.parse("2026-12-02T07:16:41Z") == datetime(2026, 12, 2, 7, 16, 41, tzinfo=UTC)
    assert timestamps.parse("2026-12-02T07:16:41.000Z") == datetime(2026, 12, 2, 7, 16, 41, tzinfo=UTC)
    assert timestamps.parse(" 2026-12-02T08:16:41+01:00 ") == datetime(2026, 12, 2, 7, 16, 41, tzinfo=UTC)
    assert timestamps.parse("2026-12-02T07:16:41").tzinfo == UTC, "no offset: UTC, never naive"
    later = datetime(2026, 12, 2, 9, 16, 41, 500, tzinfo=timezone(timedelta(hours=2)))
    assert timestamps.stamp(later) == "2026-12-02T07:16:41Z"
    with pytest.raises(ValueError):
        timestamps.parse("yesterday")

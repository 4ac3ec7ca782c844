"""Key rotation arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from speke_packager.errors import UsageError
from speke_packager.pipeline.rotation import RotationSchedule


def test_index_and_bounds() -> None:
    r = RotationSchedule(interval=6, t0=10)
    assert [r.index(t) for t in (10, 15.999, 16, 21.9999999999, 22)] == [0, 0, 1, 2, 2]
    assert r.bounds(2) == (22, 28)
    with pytest.raises(UsageError):
        r.index(9.5)
    with pytest.raises(UsageError):
        r.bounds(-1)


def test_segments_must_not_cross_boundaries() -> None:
    r = RotationSchedule(interval=4)
    starts = [0, 2, 4, 6, 8]
    assert r.segment_periods(starts, [s + 2 for s in starts]) == [0, 0, 1, 1, 2]
    with pytest.raises(UsageError, match="crosses"):
        RotationSchedule(interval=5).segment_periods(starts, [s + 2 for s in starts])


def test_next_fetch_with_lead() -> None:
    r = RotationSchedule(interval=60, lead=20)
    assert r.next_fetch(0, set()) == 0
    assert r.next_fetch(30, {0}) is None
    assert r.next_fetch(40, {0}) == 1
    assert r.next_fetch(40, {0, 1}) is None
    assert r.next_fetch(61, {0}) == 1  # late: the current period first


def test_key_period_datetimes() -> None:
    origin = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    r = RotationSchedule(interval=30, t0=5, origin=origin)
    p = r.key_period(2)
    assert p.index == 2 and p.start == "2026-12-01T12:01:00.000Z"
    assert p.end == "2026-12-01T12:01:30.000Z"
    east = RotationSchedule(interval=30, origin=origin.astimezone(timezone(timedelta(hours=2))))
    assert east.key_period(0).start == "2026-12-01T12:00:00.000Z"
    assert RotationSchedule(interval=30).key_period(1).start is None


@pytest.mark.parametrize("kw", [{"interval": 0}, {"interval": float("nan")},
                                {"interval": 6, "lead": -1},
                                {"interval": 6, "origin": datetime(2026, 1, 1)}])
def test_bad_schedules(kw: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        RotationSchedule(**kw)  # type: ignore[arg-type]

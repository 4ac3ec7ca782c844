"""A segment that runs a few milliseconds into the next key period (an encoder's audio ends on
whole AAC frames) stays in the period of its start; a larger overrun is refused."""

from __future__ import annotations

import pytest

from speke_packager.errors import UsageError
from speke_packager.pipeline.live.session import AUDIO_OVERRUN
from speke_packager.pipeline.rotation import RotationSchedule


def test_small_overrun_stays_in_its_period() -> None:
    s = RotationSchedule(interval=4.0)
    # 2.0 s AAC segments of 1024-sample frames at 48 kHz end 21.3 ms late
    assert s.segment_periods([2.0, 4.0213], [4.0213, 6.0427], overrun=AUDIO_OVERRUN) == [0, 1]


def test_exact_boundaries_need_no_overrun() -> None:
    assert RotationSchedule(interval=4.0).segment_periods([0.0, 2.0, 4.0], [2.0, 4.0, 6.0]) \
        == [0, 0, 1]


@pytest.mark.parametrize("end", [4.0213, 4.5])
def test_overrun_past_the_tolerance_is_refused(end: float) -> None:
    s = RotationSchedule(interval=4.0)
    with pytest.raises(UsageError, match="crosses a key-period boundary"):
        s.segment_periods([2.0], [end])  # default: exact boundaries
    if end > 4.0 + AUDIO_OVERRUN:
        with pytest.raises(UsageError, match="crosses a key-period boundary"):
            s.segment_periods([2.0], [end], overrun=AUDIO_OVERRUN)

"""When a retry tier lets go of a record (pure: fixed vectors)."""

from __future__ import annotations

import pytest

from streams.retry.agent import HOP_TOLERANCE_S, release_time


@pytest.mark.parametrize(
    ("due", "appended", "tier", "released"),
    [
        # Due before the tier's delay is used up: at its due time.
        (1000.5, 1000.0, 1.0, 1000.5),
        # Exactly one tier delay: at its due time.
        (1001.0, 1000.0, 1.0, 1001.0),
        # The timestamp was truncated to the millisecond: still at its due time, no hop.
        (1001.0009, 1000.000, 1.0, 1001.0009),
        (1001.0 + HOP_TOLERANCE_S, 1000.0, 1.0, 1001.0 + HOP_TOLERANCE_S),
        # Due well after this tier's delay: let go when the tier's delay is used up (a hop).
        (1001.2, 1000.0, 1.0, 1001.0),
        (1000.0 + 3600, 1000.0, 60.0, 1060.0),
    ],
)
def test_release_time(due: float, appended: float, tier: float, released: float) -> None:
    assert release_time(due, appended, tier) == pytest.approx(released, abs=1e-9)

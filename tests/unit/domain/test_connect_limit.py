"""The sliding-window connect limit every Kraken connection of an ingest shares."""

from __future__ import annotations

import pytest

from models.connect_limit import ConnectLimiter

pytestmark = pytest.mark.unit


def test_the_connect_limit_holds_in_every_window() -> None:
    limiter = ConnectLimiter(limit=3, window=10.0)
    for now in (0.0, 1.0, 2.0):
        assert limiter.wait(now) == 0.0
        limiter.record(now)
    assert limiter.wait(2.5) == 7.5  # the fourth waits until the first leaves the window
    assert limiter.wait(10.0) == 0.0
    limiter.record(10.0)
    assert limiter.wait(10.5) == 0.5

"""A sliding-window limit on connection attempts. Pure (the caller sleeps).

Kraken limits connection attempts per IP (about 150 per 10 minutes) and answers a storm of them with a
temporary ban. Every Kraken connection of an ingest shares one limit, whatever its own backoff says.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class ConnectLimiter:
    """At most ``limit`` attempts in any ``window`` seconds."""

    limit: int = 100
    window: float = 600.0
    delayed: int = 0  # attempts that had to wait for the window
    _times: deque[float] = field(default_factory=deque)

    def wait(self, now: float) -> float:
        """Seconds until an attempt is allowed at ``now`` (0: go ahead, and call :meth:`record`)."""
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.window - now

    def record(self, now: float) -> None:
        self._times.append(now)

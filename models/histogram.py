"""A fixed-bucket latency histogram, fed per batch: far cheaper than a metrics library per observation."""

from __future__ import annotations

from bisect import bisect_left

#: Seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LatencyHistogram:
    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.bounds_ns = [int(b * 1e9) for b in buckets]
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum_ns = 0
        self.count = 0

    def observe_ns(self, value: int) -> None:
        self.counts[bisect_left(self.bounds_ns, value)] += 1
        self.sum_ns += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus-style ``(le, count)`` pairs."""
        out, running = [], 0
        for bound, n in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=False):
            running += n
            out.append((bound, running))
        return out

"""Kraken's RFC 3339 timestamps (``2026-08-16T23:37:05.399046Z``) to integer nanoseconds, fast."""

from __future__ import annotations

from calendar import timegm
from time import strptime

_SECONDS: dict[str, int] = {}


def rfc3339_ns(stamp: str | None) -> int | None:
    """Nanoseconds since the epoch, or None for a missing or malformed stamp."""
    if not stamp or len(stamp) < 20 or stamp[-1] != "Z":
        return None
    head = stamp[:19]
    seconds = _SECONDS.get(head)
    if seconds is None:
        try:
            seconds = timegm(strptime(head, "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            return None
        if len(_SECONDS) > 100_000:
            _SECONDS.clear()
        _SECONDS[head] = seconds
    if len(stamp) == 27 and stamp[19] == ".":  # Kraken's form: microseconds
        micros = stamp[20:26]
        if micros.isdigit():
            return seconds * 1_000_000_000 + int(micros) * 1000
        return None
    frac = stamp[20:-1] if stamp[19] == "." else ""
    if not frac.isdigit() and frac:
        return None
    return seconds * 1_000_000_000 + int((frac + "000000000")[:9] or 0)

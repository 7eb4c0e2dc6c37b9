"""Kraken's v2 book checksum over plain ``(price, qty)`` text levels.

:class:`models.book.L2Book` computes the same value incrementally from cached fragments; this form is
for code that holds levels as text (the simulator, tests, consumers of ``kraken.book.deltas``).
"""

from __future__ import annotations

from collections.abc import Sequence
from zlib import crc32

from models.numbers import fragment

#: Levels per side that the checksum covers, whatever the subscribed depth.
CHECKSUM_LEVELS = 10


def checksum_text(asks: Sequence[tuple[str, str]], bids: Sequence[tuple[str, str]]) -> str:
    """Top 10 asks (best first, ascending) then top 10 bids (best first, descending)."""
    return "".join(
        fragment(price) + fragment(qty)
        for price, qty in (*asks[:CHECKSUM_LEVELS], *bids[:CHECKSUM_LEVELS])
    )


def checksum(asks: Sequence[tuple[str, str]], bids: Sequence[tuple[str, str]]) -> int:
    """Unsigned CRC32 of :func:`checksum_text`; levels must be written with the pair's precision."""
    return crc32(checksum_text(asks, bids).encode())

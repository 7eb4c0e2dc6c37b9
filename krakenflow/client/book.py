"""A local L2 book rebuilt from ``kraken.book.deltas`` records: exact decimals, Kraken's checksum.

Levels are kept as the wire's decimal strings, ordered by their exact ``Decimal`` value (never a float),
so the book is the worker's to the byte and its checksum can be compared with the one each record
carries. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from sortedcontainers import SortedDict

from models.checksum import CHECKSUM_LEVELS, checksum

Level = tuple[str, str]


class LocalBook:
    """One pair's book. ``bids`` and ``asks`` are best first: ``book.bids[:10]``, ``book.asks[0]``."""

    __slots__ = ("_asks", "_bids", "checksum", "checksum_ok", "epoch", "seq", "symbol", "ts_exchange_ns")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._bids: SortedDict = SortedDict()  # -price -> level: best (highest) first
        self._asks: SortedDict = SortedDict()  # price -> level: best (lowest) first
        self.epoch = 0
        self.seq = 0
        self.checksum = 0  # the last record's (Kraken's algorithm over the worker's book)
        self.checksum_ok: bool | None = None  # this book's checksum equals the record's
        self.ts_exchange_ns = 0

    def replace(self, bids: Iterable[Sequence[str]], asks: Iterable[Sequence[str]]) -> None:
        self._bids.clear()
        self._asks.clear()
        self.apply(bids, asks)

    def apply(self, bids: Iterable[Sequence[str]], asks: Iterable[Sequence[str]]) -> None:
        """Levels in order: a zero quantity deletes, anything else sets (Kraken's rule)."""
        for side, levels, sign in ((self._bids, bids, -1), (self._asks, asks, 1)):
            for price, qty in levels:
                key = Decimal(price) * sign
                if Decimal(qty) == 0:
                    side.pop(key, None)
                else:
                    side[key] = (price, qty)

    def verify(self, expected: int) -> bool:
        self.checksum = expected
        self.checksum_ok = self.computed_checksum() == expected
        return self.checksum_ok

    def computed_checksum(self) -> int:
        return checksum(self._top(self._asks), self._top(self._bids))

    @staticmethod
    def _top(side: SortedDict, n: int = CHECKSUM_LEVELS) -> list[Level]:
        return [side.peekitem(i)[1] for i in range(min(n, len(side)))]

    @property
    def bids(self) -> list[Level]:
        return list(self._bids.values())

    @property
    def asks(self) -> list[Level]:
        return list(self._asks.values())

    def top(self, depth: int) -> tuple[list[Level], list[Level]]:
        """(bids, asks), ``depth`` levels each, best first, without copying the whole book."""
        return self._top(self._bids, depth), self._top(self._asks, depth)

    @property
    def best_bid(self) -> Level | None:
        return self._bids.peekitem(0)[1] if self._bids else None

    @property
    def best_ask(self) -> Level | None:
        return self._asks.peekitem(0)[1] if self._asks else None

    @property
    def spread(self) -> Decimal | None:
        bid, ask = self.best_bid, self.best_ask
        return Decimal(ask[0]) - Decimal(bid[0]) if bid and ask else None

    @property
    def mid(self) -> Decimal | None:
        bid, ask = self.best_bid, self.best_ask
        return (Decimal(ask[0]) + Decimal(bid[0])) / 2 if bid and ask else None

    def __len__(self) -> int:
        return len(self._bids) + len(self._asks)

    def __repr__(self) -> str:
        return (f"LocalBook({self.symbol} epoch={self.epoch} seq={self.seq} bid={self.best_bid} ask={self.best_ask} "
                f"checksum_ok={self.checksum_ok})")

"""A reference consumer of book deltas, as a downstream user would write it (used by several tests)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal


class DeltaConsumer:
    """Books rebuilt from deltas: a snapshot replaces, other levels apply in order, zero deletes."""

    def __init__(self) -> None:
        self.books: dict[str, dict[str, dict[Decimal, tuple[str, str]]]] = {}

    def apply(self, symbol: str, is_snapshot: bool, bids: Iterable[Sequence[str]], asks: Iterable[Sequence[str]]) -> None:
        book = self.books.setdefault(symbol, {"bids": {}, "asks": {}})
        if is_snapshot:
            book["bids"], book["asks"] = {}, {}
        for side, levels in (("bids", bids), ("asks", asks)):
            for price, qty in levels:
                if Decimal(qty) == 0:
                    book[side].pop(Decimal(price), None)
                else:
                    book[side][Decimal(price)] = (price, qty)

    def apply_record(self, delta: dict[str, object]) -> None:
        """A ``kraken.book.deltas`` JSON value."""
        self.apply(str(delta["symbol"]), bool(delta["is_snapshot"]), delta["bids"], delta["asks"])  # type: ignore[arg-type]

    def levels(self, symbol: str, side: str) -> list[tuple[str, str]]:
        """Best first."""
        book = self.books.get(symbol, {"bids": {}, "asks": {}})[side]
        return [book[p] for p in sorted(book, reverse=(side == "bids"))]

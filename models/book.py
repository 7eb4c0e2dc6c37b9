"""The Kraken v2 L2 order book: exact levels, per-message truncation, CRC32 checksum, normalized deltas.

Rules (Kraken's book v2 guide, verified on 767 real checksums):

1. a snapshot replaces the book;
2. update levels apply in message order, an absolute quantity, ``0`` deletes the level;
3. after every message each side is truncated to the subscribed depth (Kraken never sends deletes for
   levels pushed out of scope);
4. the checksum is CRC32 of the top 10 asks (ascending) then the top 10 bids (descending), each level
   written as price then quantity with the ``.`` removed and leading zeros stripped.

Every applied message yields a :class:`BookDelta`: the net change per touched level, with explicit zero
quantities for levels deleted or truncated away, so a consumer that applies deltas holds the same book.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable, Union
from zlib import crc32

from sortedcontainers import SortedDict

from models.numbers import fragment, scale, unscaled

#: Depths Kraken serves for the ``book`` channel.
DEPTHS: tuple[int, ...] = (10, 25, 100, 500, 1000)
#: Levels per side that the checksum covers, whatever the depth.
CHECKSUM_LEVELS = 10

Key = Union[int, Decimal]
#: A level as stored: (price text, qty text, checksum fragment of price+qty).
Level = tuple[str, str, str]
#: A level as it arrives or leaves: (price token, qty token), decimal strings.
Pair = tuple[str, str]


@dataclass(slots=True)
class BookDelta:
    """The normalized result of applying one book message.

    ``bids``/``asks`` hold ``(price, qty)`` decimal strings; a zero quantity deletes the level. For a
    snapshot (``is_snapshot``) they are the whole book, best first, and replace it.
    """

    symbol: str
    is_snapshot: bool
    bids: list[Pair]
    asks: list[Pair]
    checksum: int
    expected_checksum: int | None
    crossed: bool

    @property
    def checksum_ok(self) -> bool | None:
        """``None`` when the message carried no checksum."""
        if self.expected_checksum is None:
            return None
        return self.checksum == self.expected_checksum


class L2Book:
    """One pair's book at one subscribed depth.

    With a known instrument precision, levels are keyed by integer ticks (fast, exact) and written with
    that precision; without one, the exact wire text is kept and keyed by :class:`~decimal.Decimal`.
    Bids are keyed by the negated price so that both sides iterate best first.
    """

    __slots__ = ("symbol", "depth", "precision", "bids", "asks", "zero_qty")

    def __init__(self, symbol: str, depth: int = 10, precision: tuple[int, int] | None = None) -> None:
        if depth < 1:
            raise ValueError(f"depth must be positive, got {depth}")
        self.symbol = symbol
        self.depth = depth
        self.precision = precision
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.zero_qty = _zero(precision)

    # -- applying messages -------------------------------------------------------------------------

    def apply_snapshot(
        self, bids: Iterable[Pair], asks: Iterable[Pair], checksum: int | None = None
    ) -> BookDelta:
        """Replace the book with a snapshot's levels (then truncate, then checksum)."""
        self.bids.clear()
        self.asks.clear()
        scratch: dict[Key, str] = {}
        self._apply(self.bids, -1, bids, scratch)
        self._apply(self.asks, 1, asks, scratch)
        self._truncate(self.bids, scratch)
        self._truncate(self.asks, scratch)
        return BookDelta(
            self.symbol, True, self.levels("bids"), self.levels("asks"),
            self.checksum(), checksum, self.crossed(),
        )

    def apply_update(
        self, bids: Iterable[Pair], asks: Iterable[Pair], checksum: int | None = None
    ) -> BookDelta:
        """Apply an update's levels in order, truncate, checksum; return the net delta."""
        touched_bids: dict[Key, str] = {}
        touched_asks: dict[Key, str] = {}
        self._apply(self.bids, -1, bids, touched_bids)
        self._apply(self.asks, 1, asks, touched_asks)
        self._truncate(self.bids, touched_bids)
        self._truncate(self.asks, touched_asks)
        return BookDelta(
            self.symbol, False, self._net(self.bids, touched_bids), self._net(self.asks, touched_asks),
            self.checksum(), checksum, self.crossed(),
        )

    def _apply(self, side: SortedDict, sign: int, levels: Iterable[Pair], touched: dict[Key, str]) -> None:
        precision = self.precision
        for price_token, qty_token in levels:
            if precision is not None:
                ticks, price = scale(price_token, precision[0])
                qty_ticks, qty = scale(qty_token, precision[1])
                key: Key = sign * ticks
                if qty_ticks:
                    side[key] = (price, qty, f"{ticks}{qty_ticks}")
                else:
                    side.pop(key, None)
            else:
                value, price = unscaled(price_token)
                qty_value, qty = unscaled(qty_token)
                key = value if sign > 0 else -value
                if qty_value:
                    side[key] = (price, qty, fragment(price) + fragment(qty))
                else:
                    side.pop(key, None)
            touched[key] = price

    def _truncate(self, side: SortedDict, touched: dict[Key, str]) -> None:
        excess = len(side) - self.depth
        while excess > 0:
            key, level = side.popitem(-1)
            touched[key] = level[0]
            excess -= 1

    def _net(self, side: SortedDict, touched: dict[Key, str]) -> list[Pair]:
        zero = self.zero_qty
        get = side.get
        out: list[Pair] = []
        for key, price in touched.items():
            level = get(key)
            out.append((price, level[1]) if level is not None else (price, zero))
        return out

    # -- reading -----------------------------------------------------------------------------------

    def checksum_text(self) -> str:
        """The string Kraken hashes: top 10 asks ascending, then top 10 bids descending."""
        asks, bids = self.asks, self.bids
        parts = [asks[k][2] for k in asks.keys()[:CHECKSUM_LEVELS]]
        parts.extend([bids[k][2] for k in bids.keys()[:CHECKSUM_LEVELS]])
        return "".join(parts)

    def checksum(self) -> int:
        """Kraken's v2 checksum of the current book (unsigned CRC32)."""
        return crc32(self.checksum_text().encode())

    def crossed(self) -> bool:
        """True when the best bid is at or above the best ask (a corrupt book)."""
        if not self.bids or not self.asks:
            return False
        return -self.bids.keys()[0] >= self.asks.keys()[0]

    def levels(self, side: str, depth: int | None = None) -> list[Pair]:
        """``(price, qty)`` decimal strings, best first, at most ``depth`` levels."""
        book = self.bids if side == "bids" else self.asks
        keys = book.keys()[:depth] if depth is not None else book.keys()
        return [(book[k][0], book[k][1]) for k in keys]

    def best(self) -> tuple[Pair | None, Pair | None]:
        """The best bid and best ask, or ``None`` for an empty side."""
        bid = self.bids.peekitem(0)[1] if self.bids else None
        ask = self.asks.peekitem(0)[1] if self.asks else None
        return (bid[:2] if bid else None, ask[:2] if ask else None)

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)

    # -- precision ---------------------------------------------------------------------------------

    def set_precision(self, precision: tuple[int, int] | None) -> None:
        """Re-key the book for a new instrument precision, keeping every level's value exactly.

        Raises :class:`models.numbers.NumberError` when a level cannot be written at the new precision;
        the book is then unchanged and needs a fresh snapshot.
        """
        if precision == self.precision:
            return
        bids, asks = self.levels("bids"), self.levels("asks")
        old = self.precision
        try:
            self.precision = precision
            self.apply_snapshot(bids, asks)
        except ValueError:
            self.precision = old
            self.apply_snapshot(bids, asks)
            raise
        self.zero_qty = _zero(precision)


def _zero(precision: tuple[int, int] | None) -> str:
    """A zero quantity written as Kraken writes deletes (``0.00000000`` at 8 decimals)."""
    if precision is None or precision[1] == 0:
        return "0"
    return "0." + "0" * precision[1]


"""The Kraken v2 L2 order book: exact levels, per-level truncation, CRC32 checksum, normalized deltas.

Rules (Kraken's book v2 guide, verified on 767 real checksums):

1. a snapshot replaces the book;
2. update levels apply in message order, an absolute quantity, ``0`` deletes the level;
3. each side is truncated to the subscribed depth after every level, not once per message: Kraken sends
   each change inside the subscriber's top N at that instant and never a delete for a level pushed out
   of scope, so a level pushed out by an insert and cancelled later in the same message is never
   deleted on the wire (truncated once per message, the book would keep it and fail every checksum
   from then on). A snapshot is the book at one instant: truncated once;
4. the checksum is CRC32 of the top 10 asks (ascending) then the top 10 bids (descending), each level
   written as price then quantity with the ``.`` removed and leading zeros stripped.

Every applied message yields a :class:`BookDelta` whose levels, applied in order, turn the previous book
into the new one: the message's own levels, each insert that pushed a level out followed by an explicit
zero-quantity delete of that level (right after it, not at the end: a later level may set it again).

Performance: levels are keyed by integer ticks (negated for bids, so both sides sort best first) in a
:class:`~sortedcontainers.SortedList`, with a plain dict holding each level's text and checksum
fragment. Token conversions are memoised per book because prices (and many quantities) repeat.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from typing import Union
from zlib import crc32

from sortedcontainers import SortedList

from models import native
from models.numbers import fragment, scale, unscaled

#: Depths Kraken serves for the ``book`` channel.
DEPTHS: tuple[int, ...] = (10, 25, 100, 500, 1000)
#: Levels per side that the checksum covers, whatever the depth.
CHECKSUM_LEVELS = 10
#: Memoised token conversions per book and kind before the memo is cleared.
_MEMO_LIMIT = 8192

Key = Union[int, Decimal]
#: A level as it arrives or leaves: (price, qty) decimal strings. Stored levels are such pairs too, so
#: the same tuple serves the book and the delta.
Pair = tuple[str, str]
#: A converted price token: (ask key, bid key, text, fragment).
_Price = tuple[Key, Key, str, str]
#: A converted qty token: (non-zero, text, fragment).
_Qty = tuple[bool, str, str]


@dataclass(slots=True)
class BookDelta:
    """The normalized result of applying one book message.

    ``bids``/``asks`` hold ``(price, qty)`` decimal strings written with the pair's precision; a zero
    quantity deletes the level. Applied in order they turn the previous book into the new one. For a
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


class _Side:
    """One side of the book: sorted keys (best first), key -> (price, qty) and key -> checksum fragment.

    ``top``/``edge``/``best`` cache the top 10 (encoded checksum text, 10th key, best key) so that
    neither the checksum nor ``crossed`` nor the "did this change reach the top 10" test indexes the
    SortedList on every message. They are valid while ``top`` is not None.
    """

    __slots__ = ("best", "edge", "frags", "is_ask", "keys", "levels", "top")

    def __init__(self, is_ask: bool) -> None:
        self.keys: SortedList = SortedList()
        self.levels: dict[Key, Pair] = {}
        self.frags: dict[Key, str] = {}
        self.is_ask = is_ask
        #: Checksum text of the top 10 (ASCII bytes), ``None`` once a change reached them.
        self.top: bytes | None = None
        #: The 10th key (``None`` with fewer than 10 levels: then every change reaches the top).
        self.edge: Key | None = None
        #: The best key, ``None`` for an empty side.
        self.best: Key | None = None

    def clear(self) -> None:
        self.keys.clear()
        self.levels.clear()
        self.frags.clear()
        self.top = None

    def refresh(self) -> bytes:
        """Recompute the top-10 cache and return the checksum text."""
        head = list(islice(self.keys, CHECKSUM_LEVELS))
        self.edge = head[-1] if len(head) == CHECKSUM_LEVELS else None
        self.best = head[0] if head else None
        top = self.top = "".join(map(self.frags.__getitem__, head)).encode()
        return top

    def top_fragments(self) -> bytes:
        top = self.top
        return top if top is not None else self.refresh()

    def pairs(self, depth: int | None = None) -> list[Pair]:
        keys = self.keys if depth is None else islice(self.keys, depth)
        return list(map(self.levels.__getitem__, keys))

    def __len__(self) -> int:
        return len(self.levels)


class L2Book:
    """One pair's book at one subscribed depth.

    With a known instrument precision ``(price decimals, qty decimals)`` levels are written with it;
    without one, the exact wire text is kept (exponents expanded) and ordered as a Decimal.
    """

    __slots__ = ("_prices", "_qtys", "asks", "bids", "depth", "precision", "symbol", "zero_qty")

    def __init__(self, symbol: str, depth: int = 10, precision: tuple[int, int] | None = None) -> None:
        if depth < 1:
            raise ValueError(f"depth must be positive, got {depth}")
        self.symbol = symbol
        self.depth = depth
        self.precision = precision
        self.bids = _Side(False)
        self.asks = _Side(True)
        self.zero_qty = _zero(precision)
        self._prices: dict[str, _Price] = {}
        self._qtys: dict[str, _Qty] = {}

    # -- applying messages -------------------------------------------------------------------------

    def apply_snapshot(
        self, bids: Iterable[Pair], asks: Iterable[Pair], checksum: int | None = None
    ) -> BookDelta:
        """Replace the book with a snapshot's levels (then truncate once, then checksum)."""
        return BookDelta(self.symbol, True, self._replace(self.bids, bids), self._replace(self.asks, asks),
                         self.checksum(), checksum, self.crossed())

    def _replace(self, side: _Side, tokens: Iterable[Pair]) -> list[Pair]:
        """Rebuild one side from a snapshot; returns its levels best first (the snapshot delta).

        Levels go into the dicts in message order (a repeated price keeps its last quantity, a zero
        deletes), then the keys are sorted once and handed to the SortedList in bulk: much cheaper
        than one ``add`` per level.
        """
        side.clear()
        prices, qtys = self._prices, self._qtys
        levels, frags, is_ask = side.levels, side.frags, side.is_ask
        for price_token, qty_token in tokens:
            p = prices.get(price_token) or self._convert_price(price_token)
            q = qtys.get(qty_token) or self._convert_qty(qty_token)
            key = p[0] if is_ask else p[1]
            if q[0]:
                levels[key] = (p[2], q[1])
                frags[key] = p[3] + q[2]
            elif levels.pop(key, None) is not None:
                del frags[key]
        ordered = sorted(levels)
        if len(ordered) > self.depth:
            for key in ordered[self.depth:]:
                del levels[key], frags[key]
            del ordered[self.depth:]
        side.keys.update(ordered)
        return list(map(levels.__getitem__, ordered))

    def apply_update(
        self, bids: Iterable[Pair], asks: Iterable[Pair], checksum: int | None = None
    ) -> BookDelta:
        """Apply an update's levels in order, truncating after each one; checksum; return the delta."""
        bid_side, ask_side = self.bids, self.asks
        bid_delta: list[Pair] = []
        ask_delta: list[Pair] = []
        if bids:
            self._apply(bid_side, bids, bid_delta)
        if asks:
            self._apply(ask_side, asks, ask_delta)
        # checksum() and crossed() inlined: this runs once per message
        ask_top = ask_side.top if ask_side.top is not None else ask_side.refresh()
        bid_top = bid_side.top if bid_side.top is not None else bid_side.refresh()
        best_bid, best_ask = bid_side.best, ask_side.best
        crossed = best_bid is not None and best_ask is not None and -best_bid >= best_ask
        return BookDelta(self.symbol, False, bid_delta, ask_delta, crc32(bid_top, crc32(ask_top)), checksum,
                         crossed)

    def _apply(self, side: _Side, tokens: Iterable[Pair], out: list[Pair]) -> None:
        prices, qtys, depth, zero = self._prices, self._qtys, self.depth, self.zero_qty
        keys, levels, frags, is_ask = side.keys, side.levels, side.frags, side.is_ask
        # Changes beyond the 10th level leave the checksum text as it was; the edge moves only when
        # a change at or inside it happens, and that change clears the cache anyway. (While the cache
        # is already clear the edge may be stale, but then the test below does not matter.) A level
        # truncated away is beyond the edge unless the depth is under 10, and then there is no edge.
        edge = side.edge
        top_changed = False
        for price_token, qty_token in tokens:
            p = prices.get(price_token) or self._convert_price(price_token)
            q = qtys.get(qty_token) or self._convert_qty(qty_token)
            key = p[0] if is_ask else p[1]
            pair = (p[2], q[1])
            out.append(pair)
            if q[0]:
                new = key not in levels
                levels[key] = pair
                frags[key] = p[3] + q[2]
                # Kraken's rule 3: truncate after every level, so only an insert can overflow, by one
                # (the book is within the depth before it). The delete goes right after the insert: a
                # later level of this message may set the same price again.
                if new:
                    keys.add(key)
                    if len(levels) > depth:
                        worst = keys.pop()
                        del frags[worst]
                        out.append((levels.pop(worst)[0], zero))
            elif key in levels:
                del levels[key], frags[key]
                keys.remove(key)
            else:
                continue
            if edge is None or key <= edge:
                top_changed = True
        if top_changed:
            side.top = None

    def _convert_price(self, token: str) -> _Price:
        if self.precision is not None:
            ticks, text = scale(token, self.precision[0])
            price: _Price = (ticks, -ticks, text, str(ticks))
        else:
            value, text = unscaled(token)
            price = (value, -value, text, fragment(text))
        if len(self._prices) >= _MEMO_LIMIT:
            self._prices.clear()
        self._prices[token] = price
        return price

    def _convert_qty(self, token: str) -> _Qty:
        if self.precision is not None:
            ticks, text = scale(token, self.precision[1])
            qty: _Qty = (ticks != 0, text, str(ticks))
        else:
            value, text = unscaled(token)
            qty = (value != 0, text, fragment(text))
        if len(self._qtys) >= _MEMO_LIMIT:
            self._qtys.clear()
        self._qtys[token] = qty
        return qty

    # -- reading -----------------------------------------------------------------------------------

    def checksum_text(self) -> str:
        """The string Kraken hashes: top 10 asks ascending, then top 10 bids descending."""
        return (self.asks.top_fragments() + self.bids.top_fragments()).decode()

    def checksum(self) -> int:
        """Kraken's v2 checksum of the current book (unsigned CRC32)."""
        return crc32(self.bids.top_fragments(), crc32(self.asks.top_fragments()))

    def crossed(self) -> bool:
        """True when the best bid is at or above the best ask (a corrupt book)."""
        bids, asks = self.bids, self.asks
        bids.top_fragments()  # refreshes the cached best keys if needed
        asks.top_fragments()
        if bids.best is None or asks.best is None:
            return False
        return -bids.best >= asks.best

    def levels(self, side: str, depth: int | None = None) -> list[Pair]:
        """``(price, qty)`` decimal strings, best first, at most ``depth`` levels."""
        return (self.bids if side == "bids" else self.asks).pairs(depth)

    def best(self) -> tuple[Pair | None, Pair | None]:
        """The best bid and best ask, or ``None`` for an empty side."""
        bid = self.bids.pairs(1)
        ask = self.asks.pairs(1)
        return (bid[0] if bid else None, ask[0] if ask else None)

    def count(self, side: str) -> int:
        """Levels held on one side (``"bids"`` or ``"asks"``)."""
        return len(self.bids if side == "bids" else self.asks)

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
            self._use_precision(precision)
            self.apply_snapshot(bids, asks)
        except ValueError:
            self._use_precision(old)
            self.apply_snapshot(bids, asks)
            raise

    def _use_precision(self, precision: tuple[int, int] | None) -> None:
        self.precision = precision
        self.zero_qty = _zero(precision)
        self._prices.clear()
        self._qtys.clear()


def _zero(precision: tuple[int, int] | None) -> str:
    """A zero quantity written as Kraken writes deletes (``0.00000000`` at 8 decimals)."""
    if precision is None or precision[1] == 0:
        return "0"
    return "0." + "0" * precision[1]


def new_book(symbol: str, depth: int, precision: tuple[int, int] | None) -> L2Book:
    """A book for ``symbol``: the native core's (same interface, :mod:`models.native`) when it is in use
    and the precision is known, else :class:`L2Book`."""
    if native.enabled and precision is not None and max(precision) <= native.MAX_PRECISION:
        book: L2Book = native.Book(symbol, depth, precision)
        return book
    return L2Book(symbol, depth, precision)

"""The simulated exchange's order books and the level changes each subscription depth sees.

Each pair keeps a full book deeper than the largest subscription (``FULL_DEPTH`` levels a side) and
evolves it with random, seeded events: size changes, new levels, cancels and trades that consume the
best level. What a subscriber at depth ``D`` receives follows Kraken's edge behaviour:

* a change at a level inside the top ``D`` is sent; changes deeper are not;
* a level pushed out of the top ``D`` by an insert is **not** deleted (the client truncates);
* when a level inside the top ``D`` is deleted, the new edge level (rank ``D``) is sent in the same
  message, so the client's book never runs short.

Checksums are computed with the book engine's own code over the top 10 levels.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import Decimal

from sortedcontainers import SortedList

from models.checksum import checksum
from models.numbers import format_ticks, scale
from sim.pairs import PairSpec

#: Levels kept per side: the deepest subscription (1000) plus headroom for edge refills.
FULL_DEPTH = 1150
Pair = tuple[str, str]


@dataclass(slots=True)
class SimTrade:
    side: str  # taker side: buy or sell
    price: str
    qty: str
    ord_type: str
    trade_id: int
    ts_ns: int = 0  # when it traded (0: the frame's time)


@dataclass(slots=True)
class PairEvent:
    """One exchange event of one pair: what each subscribed depth sees, its checksum, its trades."""

    symbol: str
    ts_ns: int
    views: dict[int, tuple[list[Pair], list[Pair]]] = field(default_factory=dict)
    checksum: int = 0
    trades: list[SimTrade] = field(default_factory=list)


class _Side:
    """Sorted keys (ticks for asks, negated ticks for bids, so best first) and key -> qty ticks."""

    __slots__ = ("keys", "qty", "sign")

    def __init__(self, sign: int) -> None:
        self.keys: SortedList = SortedList()
        self.qty: dict[int, int] = {}
        self.sign = sign


class PairMarket:
    """One pair's exchange book, deterministic for a given seed."""

    def __init__(self, spec: PairSpec, seed: int) -> None:
        self.spec = spec
        self.rng = random.Random(f"{seed}/{spec.symbol}")
        self.pp, self.qp = spec.price_precision, spec.qty_precision
        self.bids, self.asks = _Side(-1), _Side(1)
        self.zero = format_ticks(0, self.qp)
        self.trade_id = 0
        self._size = Decimal(spec.qty) * (10 ** self.qp)
        self._texts: dict[int, str] = {}
        mid, _ = scale(spec.price, self.pp)
        gap = max(1, mid // 20000)  # a tick of about 0.5 bp between levels, at least one
        for i in range(FULL_DEPTH):
            self._put(self.asks, mid + gap * (i + 1))
            if mid - gap * (i + 1) > 0:
                self._put(self.bids, -(mid - gap * (i + 1)))
        self.gap = gap

    # -- reading -----------------------------------------------------------------------------------

    def price_text(self, key: int) -> str:
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = format_ticks(abs(key), self.pp)
        return text

    def levels(self, side: _Side, depth: int) -> list[Pair]:
        return [(self.price_text(k), format_ticks(side.qty[k], self.qp)) for k in side.keys[:depth]]

    def snapshot(self, depth: int) -> tuple[list[Pair], list[Pair], int]:
        """Top ``depth`` bids and asks (best first) and the book's checksum."""
        return self.levels(self.bids, depth), self.levels(self.asks, depth), self.checksum()

    def checksum(self) -> int:
        return checksum(self.levels(self.asks, 10), self.levels(self.bids, 10))

    def best(self) -> tuple[Pair | None, Pair | None]:
        bids, asks = self.levels(self.bids, 1), self.levels(self.asks, 1)
        return (bids[0] if bids else None, asks[0] if asks else None)

    # -- evolving ----------------------------------------------------------------------------------

    def step(self, depths: Collection[int], ts_ns: int) -> PairEvent:
        """Apply 1-3 random changes (sometimes a trade) and report what each depth sees."""
        event = PairEvent(self.spec.symbol, ts_ns, {d: ([], []) for d in depths})
        rng = self.rng
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            roll = rng.random()
            side = self.bids if rng.random() < 0.5 else self.asks
            if roll < 0.15:
                self._trade(side, event)
            elif roll < 0.55:
                self._resize(side, event)
            elif roll < 0.78:
                self._add(side, event)
            else:
                self._cancel(side, event)
        for side in (self.bids, self.asks):  # keep the book deep; far levels are invisible
            while len(side.keys) < FULL_DEPTH:
                worst = abs(side.keys[-1])
                key = side.sign * (worst + side.sign * self.gap)
                if key == 0 or (side.sign < 0 and -key <= 0):
                    break
                self._set(side, key, self._new_qty(), event)
        event.checksum = self.checksum()
        return event

    def _rank(self) -> int:
        return min(int(self.rng.expovariate(1 / 6)), FULL_DEPTH - 1)

    def _new_qty(self) -> int:
        return max(1, int(self._size * Decimal(str(round(self.rng.lognormvariate(0, 0.9), 6)))))

    def _resize(self, side: _Side, event: PairEvent) -> None:
        key = side.keys[min(self._rank(), len(side.keys) - 1)]
        self._set(side, key, self._new_qty(), event)

    def _add(self, side: _Side, event: PairEvent) -> None:
        best_bid, best_ask = -self.bids.keys[0], self.asks.keys[0]
        if best_ask - best_bid > 1 and self.rng.random() < 0.5:
            # makers improve the price: a new best level inside the spread keeps it tight
            ticks = best_bid + 1 + self.rng.randrange(best_ask - best_bid - 1)
            self._set(side, side.sign * ticks, self._new_qty(), event)
            return
        rank = self._rank()
        anchor = abs(side.keys[min(rank, len(side.keys) - 1)])
        # a new price a few ticks from an existing level, on its own side of the spread
        ticks = anchor + side.sign * self.rng.randint(-self.gap, self.gap)
        best_other = abs((self.asks if side is self.bids else self.bids).keys[0])
        if ticks <= 0 or (side is self.bids and ticks >= best_other) or (side is self.asks and ticks <= best_other):
            return self._resize(side, event)
        self._set(side, side.sign * ticks, self._new_qty(), event)

    def _cancel(self, side: _Side, event: PairEvent) -> None:
        if len(side.keys) > 20:
            self._delete(side, side.keys[min(self._rank(), len(side.keys) - 1)], event)

    def _trade(self, taker_book: _Side, event: PairEvent) -> None:
        # a taker sell hits the best bid, a taker buy lifts the best ask
        side = taker_book
        key = side.keys[0]
        level_qty = side.qty[key]
        qty = min(level_qty, max(1, int(self._new_qty() * self.rng.random())))
        self.trade_id += 1
        event.trades.append(SimTrade(
            "sell" if side is self.bids else "buy", self.price_text(key), format_ticks(qty, self.qp),
            "market" if self.rng.random() < 0.7 else "limit", self.trade_id, event.ts_ns,
        ))
        if qty == level_qty:
            self._delete(side, key, event)
        else:
            self._set(side, key, level_qty - qty, event)

    # -- primitive changes, with what each depth sees ----------------------------------------------

    def _put(self, side: _Side, key: int) -> None:
        side.keys.add(key)
        side.qty[key] = self._new_qty()

    def _set(self, side: _Side, key: int, qty: int, event: PairEvent) -> None:
        if key not in side.qty:
            side.keys.add(key)
        side.qty[key] = qty
        if event.views:
            rank = side.keys.bisect_left(key)
            level = (self.price_text(key), format_ticks(qty, self.qp))
            index = 0 if side is self.bids else 1
            for depth, view in event.views.items():
                if rank < depth:
                    view[index].append(level)

    def _delete(self, side: _Side, key: int, event: PairEvent) -> None:
        rank = side.keys.bisect_left(key)
        side.keys.remove(key)
        del side.qty[key]
        index = 0 if side is self.bids else 1
        for depth, view in event.views.items():
            if rank < depth:
                view[index].append((self.price_text(key), self.zero))
                if len(side.keys) >= depth:  # Kraken refills the edge in the same message
                    edge = side.keys[depth - 1]
                    view[index].append((self.price_text(edge), format_ticks(side.qty[edge], self.qp)))

"""Ticker and OHLC state built from the simulator's own trades, so they agree with the trade channel."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from sim.exchange import SimTrade
from sim.render import rfc3339_nanos

TRADE_SNAPSHOT = 50  # trades in Kraken's trade snapshot

#: OHLC intervals Kraken serves, in minutes.
OHLC_INTERVALS: tuple[int, ...] = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)


def _q(value: Decimal, precision: int) -> str:
    # format "f": str() would write a zero as 0E-8, which is no JSON number token Kraken sends
    return format(value.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_HALF_EVEN), "f")


@dataclass(slots=True)
class _Candle:
    begin_ns: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    notional: Decimal
    trades: int


class PairStats:
    """Last price, volume, VWAP, range and candles of one pair since the simulator started."""

    def __init__(self, price_precision: int, qty_precision: int, reference_price: str) -> None:
        self.pp, self.qp = price_precision, qty_precision
        self.open = self.last = self.high = self.low = Decimal(reference_price)
        self.volume = Decimal(0)
        self.notional = Decimal(0)
        self.candles: dict[int, _Candle] = {}
        self.recent: deque[SimTrade] = deque(maxlen=TRADE_SNAPSHOT)  # what a trade snapshot sends

    def on_trades(self, trades: list[SimTrade], ts_ns: int, intervals: Iterable[int]) -> None:
        self.recent.extend(trades)
        for t in trades:
            price, qty = Decimal(t.price), Decimal(t.qty)
            self.last = price
            self.high, self.low = max(self.high, price), min(self.low, price)
            self.volume += qty
            self.notional += price * qty
            for interval in intervals:
                self._candle(interval, ts_ns, price, qty)

    def _candle(self, interval: int, ts_ns: int, price: Decimal, qty: Decimal) -> None:
        width = interval * 60_000_000_000
        begin = ts_ns - ts_ns % width
        c = self.candles.get(interval)
        if c is None or c.begin_ns != begin:
            self.candles[interval] = _Candle(begin, price, price, price, price, qty, price * qty, 1)
            return
        c.high, c.low, c.close = max(c.high, price), min(c.low, price), price
        c.volume += qty
        c.notional += price * qty
        c.trades += 1

    def candle(self, interval: int, ts_ns: int) -> dict[str, str]:
        """The current candle of ``interval`` minutes as number tokens (empty at the last price)."""
        width = interval * 60_000_000_000
        begin = ts_ns - ts_ns % width
        c = self.candles.get(interval)
        if c is None or c.begin_ns != begin:
            c = _Candle(begin, self.last, self.last, self.last, self.last, Decimal(0), Decimal(0), 0)
        vwap = c.notional / c.volume if c.volume else c.close
        return {
            "open": _q(c.open, self.pp), "high": _q(c.high, self.pp), "low": _q(c.low, self.pp),
            "close": _q(c.close, self.pp), "vwap": _q(vwap, self.pp), "trades": str(c.trades),
            "volume": _q(c.volume, self.qp), "interval_begin": f'"{rfc3339_nanos(c.begin_ns)}"',
            "interval": str(interval),
        }

    def ticker(self, bid: tuple[str, str] | None, ask: tuple[str, str] | None) -> dict[str, str]:
        vwap = self.notional / self.volume if self.volume else self.last
        change = self.last - self.open
        pct = (change / self.open * 100) if self.open else Decimal(0)
        zero = _q(Decimal(0), self.qp)
        return {
            "bid": bid[0] if bid else _q(self.last, self.pp), "bid_qty": bid[1] if bid else zero,
            "ask": ask[0] if ask else _q(self.last, self.pp), "ask_qty": ask[1] if ask else zero,
            "last": _q(self.last, self.pp), "volume": _q(self.volume, self.qp), "vwap": _q(vwap, self.pp),
            "low": _q(self.low, self.pp), "high": _q(self.high, self.pp), "change": _q(change, self.pp),
            "change_pct": _q(pct, 2),
        }

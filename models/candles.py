"""OHLCV candles folded from normalized trades. Pure: the Faust windowed tables hold the values.

A candle is kept as JSON with decimal strings. Folding is idempotent for replays: a trade whose
``trade_id`` is not above the candle's ``last_trade_id`` changes nothing (Kraken's trade ids grow per
pair). VWAP is rounded half-even to the pair's price decimals, as the exchange's ohlc channel does.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from time import gmtime, strftime
from typing import Any

INTERVALS: dict[str, int] = {"1m": 60, "5m": 300, "1h": 3600}


def _text(value: Decimal) -> str:
    return format(value, "f")


def fold(candle: dict[str, Any] | None, trade: dict[str, Any], interval: str) -> dict[str, Any] | None:
    """The candle after ``trade``, or None when the trade was already counted."""
    if candle is not None and trade["trade_id"] <= candle["last_trade_id"]:
        return None
    price, qty = Decimal(trade["price"]), Decimal(trade["qty"])
    buy = qty if trade["side"] == "buy" else Decimal(0)
    if candle is None:
        width = INTERVALS[interval] * 1_000_000_000
        ts = int(trade["ts_exchange_ns"])
        decimals = len(trade["price"].partition(".")[2])
        return {
            "exchange": trade["exchange"], "symbol": trade["symbol"], "exchange_symbol": trade["exchange_symbol"],
            "interval": interval, "interval_begin_ns": ts - ts % width, "open": trade["price"],
            "high": trade["price"], "low": trade["price"], "close": trade["price"], "volume": trade["qty"],
            "notional": _text(price * qty), "trades": 1, "buy_volume": _text(buy), "sell_volume": _text(qty - buy),
            "first_trade_id": trade["trade_id"], "last_trade_id": trade["trade_id"], "price_decimals": decimals,
        }
    c = dict(candle)
    if price > Decimal(c["high"]):
        c["high"] = trade["price"]
    if price < Decimal(c["low"]):
        c["low"] = trade["price"]
    c["close"] = trade["price"]
    c["volume"] = _text(Decimal(c["volume"]) + qty)
    c["notional"] = _text(Decimal(c["notional"]) + price * qty)
    c["buy_volume"] = _text(Decimal(c["buy_volume"]) + buy)
    c["sell_volume"] = _text(Decimal(c["sell_volume"]) + qty - buy)
    c["trades"] += 1
    c["last_trade_id"] = trade["trade_id"]
    return c


def finalize(candle: dict[str, Any]) -> dict[str, Any]:
    """The record published on ``kraken.candles`` for a closed window."""
    volume = Decimal(candle["volume"])
    unit = Decimal(1).scaleb(-candle["price_decimals"])
    vwap = (Decimal(candle["notional"]) / volume).quantize(unit, rounding=ROUND_HALF_EVEN) if volume else None
    begin = candle["interval_begin_ns"]
    seconds, rest = divmod(begin, 1_000_000_000)
    out = {k: v for k, v in candle.items() if k not in ("notional", "price_decimals")}
    out["vwap"] = _text(vwap) if vwap is not None else None
    out["interval_begin"] = strftime("%Y-%m-%dT%H:%M:%S", gmtime(seconds)) + f".{rest:09d}Z"
    out["interval_end_ns"] = begin + INTERVALS[candle["interval"]] * 1_000_000_000
    return out



class CandleClock:
    """Open candle windows and their closing, on exchange time alone. Pure.

    A partition of ``kraken.trades`` has a watermark: the newest exchange time of any trade read from
    it. A window ``[begin, begin + width)`` closes once the watermark passes ``begin + width + grace``;
    a trade whose window has closed is late (counted, not folded: the candle is out). Nothing here
    reads a clock, so a replay at any speed closes the same windows with the same trades. A partition
    with no trade at all keeps its last windows open until its next trade.

    State is per ``(symbol, interval)`` (:attr:`windows`, JSON-ready for a table, taken back with
    :meth:`load`) and per partition (:attr:`watermarks`).
    """

    def __init__(self, grace_ns: int) -> None:
        self.grace_ns = grace_ns
        self.windows: dict[str, dict[str, Any]] = {}  # "BTC-USD|1m" -> {"partition", "open", "closed_until"}
        self.watermarks: dict[int, int] = {}
        self.late = 0
        self.duplicates = 0
        self._due: dict[int, int] = {}  # partition -> earliest close time of its open windows

    @staticmethod
    def key(symbol: str, interval: str) -> str:
        return f"{symbol}|{interval}"

    def load(self, key: str, state: dict[str, Any]) -> None:
        """Take a key's stored state (after a restart or a rebalance)."""
        self.windows[key] = state
        for begin in state["open"]:
            self._expect(state["partition"], int(begin) + self._width(key) + self.grace_ns)

    def forget(self, partitions: set[int]) -> None:
        """Drop the state of partitions owned elsewhere now (:meth:`load` takes it back if they return)."""
        for key in [k for k, s in self.windows.items() if s["partition"] in partitions]:
            del self.windows[key]
        for partition in partitions:
            self.watermarks.pop(partition, None)
            self._due.pop(partition, None)

    def fold(self, trade: dict[str, Any], partition: int) -> tuple[list[dict[str, Any]], set[str]]:
        """Fold one normalized trade; returns the candles it closed (oldest first, finalized) and the keys
        whose state changed."""
        ts = int(trade["ts_exchange_ns"])
        watermark = self.watermarks[partition] = max(self.watermarks.get(partition, 0), ts)
        changed: set[str] = set()
        for interval, seconds in INTERVALS.items():
            key = self.key(trade["symbol"], interval)
            width = seconds * 1_000_000_000
            begin = ts - ts % width
            state = self.windows.setdefault(key, {"partition": partition, "open": {}, "closed_until": 0})
            if begin < state["closed_until"] or begin + width + self.grace_ns <= watermark:
                self.late += 1
                continue
            folded = fold(state["open"].get(str(begin)), trade, interval)
            if folded is None:
                self.duplicates += 1
                continue
            state["open"][str(begin)] = folded
            changed.add(key)
            self._expect(partition, begin + width + self.grace_ns)
        return self._close(partition, watermark, changed), changed

    def open_candle(self, symbol: str, interval: str) -> dict[str, Any] | None:
        """The newest open window's candle."""
        state = self.windows.get(self.key(symbol, interval))
        if not state or not state["open"]:
            return None
        return finalize(state["open"][max(state["open"], key=int)])

    def _close(self, partition: int, watermark: int, changed: set[str]) -> list[dict[str, Any]]:
        if watermark < self._due.get(partition, 1 << 62):
            return []
        closed: list[dict[str, Any]] = []
        due = 1 << 62
        for key, state in self.windows.items():
            if state["partition"] != partition or not state["open"]:
                continue
            width = self._width(key)
            for begin in sorted(state["open"], key=int):
                end = int(begin) + width
                if end + self.grace_ns <= watermark:
                    closed.append(finalize(state["open"].pop(begin)))
                    state["closed_until"] = max(state["closed_until"], end)
                    changed.add(key)
                else:
                    due = min(due, end + self.grace_ns)
        self._due[partition] = due
        closed.sort(key=lambda c: (c["interval_end_ns"], c["symbol"], c["interval"]))
        return closed

    def _expect(self, partition: int, close_ns: int) -> None:
        self._due[partition] = min(self._due.get(partition, 1 << 62), close_ns)

    @staticmethod
    def _width(key: str) -> int:
        return INTERVALS[key.rpartition("|")[2]] * 1_000_000_000

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


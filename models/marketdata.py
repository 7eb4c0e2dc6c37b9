"""Trades and tickers -> normalized records, market summaries and large-trade alerts. Pure.

Trades get a deterministic ``event_id`` (``kraken:BTC-USD:<trade_id>``; Kraken's ``trade_id`` is an
integer sequence per book), so replays and rebalances produce the same ids and consumers deduplicate
on it. A trade at or below the pair's last seen ``trade_id`` (a trade snapshot after a resubscribe,
a replayed frame) is not emitted again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from models.messages import Ticker, TickerFrame, TradeFrame
from models.timeutil import rfc3339_ns

EXCHANGE = "kraken"


@dataclass(slots=True)
class MarketState:
    """What a pair's market summary needs beside its book."""

    last_trade_id: int = 0
    last_price: str | None = None
    last_trade_ns: int = 0
    ticker: dict[str, str] = field(default_factory=dict)
    ticker_ns: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"last_trade_id": self.last_trade_id, "last_price": self.last_price,
                "last_trade_ns": self.last_trade_ns, "ticker": self.ticker, "ticker_ns": self.ticker_ns}

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> "MarketState":
        return cls(**value) if value else cls()


@dataclass(slots=True)
class WhaleThresholds:
    """Notional (price x qty, in the quote currency) at or above which a trade is a "whale"."""

    default: Decimal = Decimal("100000")
    per_pair: dict[str, Decimal] = field(default_factory=dict)

    def of(self, symbol: str) -> Decimal:
        return self.per_pair.get(symbol, self.default)

    @classmethod
    def parse(cls, default: str, per_pair: tuple[str, ...]) -> "WhaleThresholds":
        """``per_pair`` items look like ``BTC/USD=250000``."""
        pairs = {}
        for item in per_pair:
            symbol, _, value = item.partition("=")
            pairs[symbol.strip()] = Decimal(value.strip())
        return cls(Decimal(default), pairs)


Emit = Callable[[str, str, dict[str, Any]], None]  # (topic suffix, key, value)


def trades(frame: TradeFrame, norm_of: Callable[[str], str], market_of: Callable[[str], MarketState],
           lineage: dict[str, Any], whales: WhaleThresholds, emit: Emit) -> int:
    """Emit new trades (``kraken.trades``) and whale alerts (``kraken.metrics``); returns how many.

    Sample trade (``data[0]``)::

        {"symbol":"BTC/USD","side":"buy","price":62806.2,"qty":0.20777800,"ord_type":"market",
         "trade_id":2,"timestamp":"2026-11-21T06:25:38.389020Z"}
    """
    emitted = 0
    for t in frame.trades:
        market = market_of(t.symbol)
        if t.trade_id <= market.last_trade_id:
            continue  # seen before: a trade snapshot or a replayed frame
        market.last_trade_id = t.trade_id
        norm = norm_of(t.symbol)
        ts = rfc3339_ns(t.timestamp)
        market.last_price, market.last_trade_ns = t.price, ts or market.last_trade_ns
        event_id = f"{EXCHANGE}:{norm}:{t.trade_id}"
        emit("trades", norm, {
            "exchange": EXCHANGE, "symbol": norm, "exchange_symbol": t.symbol, "event_id": event_id,
            "trade_id": t.trade_id, "side": t.side, "price": t.price, "qty": t.qty, "ord_type": t.ord_type,
            "ts_exchange_ns": ts, **lineage,
        })
        emitted += 1
        notional = Decimal(t.price) * Decimal(t.qty)
        threshold = whales.of(t.symbol)
        if notional >= threshold:
            emit("metrics", norm, {
                "exchange": EXCHANGE, "symbol": norm, "metric": "whale_trade", "event_id": event_id,
                "side": t.side, "price": t.price, "qty": t.qty, "notional": str(notional),
                "threshold": str(threshold), "ts_exchange_ns": ts, **lineage,
            })
    return emitted


TICKER_FIELDS = ("bid", "bid_qty", "ask", "ask_qty", "last", "volume", "vwap", "low", "high", "change", "change_pct")


def tickers(frame: TickerFrame, norm_of: Callable[[str], str], market_of: Callable[[str], MarketState],
            lineage: dict[str, Any], recv_ns: int | None, emit: Emit) -> None:
    """Emit normalized tickers (``kraken.tickers``) and keep the latest per pair for summaries.

    Sample ticker (``data[0]``)::

        {"symbol":"BTC/USD","bid":62802.5,"bid_qty":0.02987767,"ask":62802.6,"ask_qty":1.09074394,
         "last":62802.6,"volume":1234.56789012,"vwap":62500.1,"low":61000.0,"high":63000.0,
         "change":802.6,"change_pct":1.29}
    """
    for t in frame.tickers:
        norm = norm_of(t.symbol)
        fields = _fields(t)
        market = market_of(t.symbol)
        market.ticker = fields
        market.ticker_ns = rfc3339_ns(t.timestamp) or recv_ns or 0
        emit("tickers", norm, {"exchange": EXCHANGE, "symbol": norm, "exchange_symbol": t.symbol, **fields,
                               "ts_exchange_ns": rfc3339_ns(t.timestamp), **lineage})


def _fields(t: Ticker) -> dict[str, str]:
    return {name: getattr(t, name) for name in TICKER_FIELDS}


def summary(symbol: str, norm: str, market: MarketState, best: tuple[tuple[str, str] | None, tuple[str, str] | None],
            state: str) -> dict[str, Any]:
    """A pair's market summary: last price, 24 h volume/high/low (Kraken's ticker), best bid/ask and
    spread from the book."""
    bid, ask = best
    spread = str(Decimal(ask[0]) - Decimal(bid[0])) if bid and ask else None
    t = market.ticker
    return {
        "exchange": EXCHANGE, "symbol": norm, "exchange_symbol": symbol,
        "last": market.last_price or t.get("last"), "volume_24h": t.get("volume"), "high_24h": t.get("high"),
        "low_24h": t.get("low"), "vwap_24h": t.get("vwap"), "change_24h": t.get("change"),
        "change_pct_24h": t.get("change_pct"), "best_bid": bid[0] if bid else None,
        "best_bid_qty": bid[1] if bid else None, "best_ask": ask[0] if ask else None,
        "best_ask_qty": ask[1] if ask else None, "spread": spread, "book_state": state,
        "last_trade_id": market.last_trade_id or None, "last_trade_ns": market.last_trade_ns or None,
    }


def dumps(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value)

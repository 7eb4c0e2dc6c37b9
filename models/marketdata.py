"""Trades and tickers -> normalized records, market summaries and large-trade alerts. Pure.

Trades get a deterministic ``event_id`` (``kraken:BTC-USD:<trade_id>``; Kraken's ``trade_id`` is an
integer sequence per book), so replays and rebalances produce the same ids and consumers deduplicate
on it. A trade at or below the pair's last seen ``trade_id`` (a trade snapshot after a resubscribe,
a replayed frame) is not emitted again. A ``trade_id`` beyond the next one is announced as a
``trade_gap`` (``kraken.metrics``): the ingest subscribes trades with Kraken's snapshot of the last 50,
so only a break longer than that (a long reconnect or ingest failover) leaves trades missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

from models.kraken.messages import Ticker, TickerFrame, TradeFrame
from models.records import EXCHANGE, Record, TickerRecord, TradeGapRecord, TradeRecord, WhaleTradeRecord
from models.timeutil import rfc3339_ns


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
    def from_json(cls, value: dict[str, Any] | None) -> MarketState:
        return cls(**value) if value else cls()


@dataclass(slots=True)
class WhaleThresholds:
    """Notional (price x qty, in the quote currency) at or above which a trade is a "whale"."""

    default: Decimal = Decimal("100000")
    per_pair: dict[str, Decimal] = field(default_factory=dict)

    def of(self, symbol: str) -> Decimal:
        return self.per_pair.get(symbol, self.default)

    @classmethod
    def parse(cls, default: str, per_pair: tuple[str, ...]) -> WhaleThresholds:
        """``per_pair`` items look like ``BTC/USD=250000``."""
        pairs = {}
        for item in per_pair:
            symbol, _, value = item.partition("=")
            pairs[symbol.strip()] = Decimal(value.strip())
        return cls(Decimal(default), pairs)


@dataclass(slots=True)
class Lineage:
    """Where a record came from: the ingest's receive time and the raw record's position."""

    ts_recv_ns: int | None
    raw_partition: int
    raw_offset: int


Emit = Callable[[str, str, Record, "int | None"], None]  # (topic suffix, key, record, exchange time ns)


def trades(frame: TradeFrame, norm_of: Callable[[str], str], market_of: Callable[[str], MarketState],
           lineage: Lineage, whales: WhaleThresholds, emit: Emit) -> tuple[int, int]:
    """Emit new trades (``kraken.trades``), whale alerts and trade gaps (``kraken.metrics``); returns
    (trades emitted, trades found missing).

    Sample trade (``data[0]``)::

        {"symbol":"BTC/USD","side":"buy","price":62806.2,"qty":0.20777800,"ord_type":"market",
         "trade_id":2,"timestamp":"2026-11-21T06:25:38.389020Z"}
    """
    emitted = missing = 0
    # in id order: a snapshot's order is not documented, and a gap is judged against the previous id
    for t in sorted(frame.trades, key=lambda t: t.trade_id) if len(frame.trades) > 1 else frame.trades:
        market = market_of(t.symbol)
        if t.trade_id <= market.last_trade_id:
            continue  # seen before: a trade snapshot or a replayed frame
        norm = norm_of(t.symbol)
        ts = rfc3339_ns(t.timestamp)
        if market.last_trade_id and t.trade_id > market.last_trade_id + 1:
            gap = t.trade_id - market.last_trade_id - 1
            missing += gap
            emit("metrics", norm, TradeGapRecord(
                EXCHANGE, norm, t.symbol, "trade_gap", market.last_trade_id + 1, t.trade_id - 1, gap,
                "trade ids jumped: trades in between were never received (a break in the trade feed longer "
                "than Kraken's 50-trade snapshot covers)", ts, lineage.ts_recv_ns, lineage.raw_partition,
                lineage.raw_offset,
            ), ts)
        market.last_trade_id = t.trade_id
        market.last_price, market.last_trade_ns = t.price, ts or market.last_trade_ns
        event_id = f"{EXCHANGE}:{norm}:{t.trade_id}"
        emit("trades", norm, TradeRecord(
            EXCHANGE, norm, t.symbol, event_id, t.trade_id, t.side, t.price, t.qty, t.ord_type, ts,
            lineage.ts_recv_ns, lineage.raw_partition, lineage.raw_offset,
        ), ts)
        emitted += 1
        notional = Decimal(t.price) * Decimal(t.qty)
        threshold = whales.of(t.symbol)
        if notional >= threshold:
            emit("metrics", norm, WhaleTradeRecord(
                EXCHANGE, norm, "whale_trade", event_id, t.side, t.price, t.qty, str(notional), str(threshold), ts,
                lineage.ts_recv_ns, lineage.raw_partition, lineage.raw_offset,
            ), ts)
    return emitted, missing


TICKER_FIELDS = ("bid", "bid_qty", "ask", "ask_qty", "last", "volume", "vwap", "low", "high", "change", "change_pct")


def tickers(frame: TickerFrame, norm_of: Callable[[str], str], market_of: Callable[[str], MarketState],
            lineage: Lineage, emit: Emit) -> None:
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
        ts = rfc3339_ns(t.timestamp)
        market.ticker_ns = ts or lineage.ts_recv_ns or 0
        emit("tickers", norm, TickerRecord(
            EXCHANGE, norm, t.symbol, **cast(dict[str, Any], fields), ts_exchange_ns=ts, ts_recv_ns=lineage.ts_recv_ns,
            raw_partition=lineage.raw_partition, raw_offset=lineage.raw_offset,
        ), ts)


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


"""Typed output records: one class per record shape on the output topics, encoded in one place.

Field order is the JSON key order on the wire. Prices and quantities are decimal strings; times are
integer nanoseconds since the epoch (``ts_*_ns``). :func:`encode` is the only serializer of output
records; :mod:`app.topics` names the topic each class is written to.

Every record ends with ``schema_version``: the version of its shape in the JSON Schemas under
``schemas/`` (generated from these classes by ``python -m app.schemas``). A change of fields bumps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import orjson

EXCHANGE = "kraken"

#: ``[price, qty]`` decimal strings; a zero quantity deletes the level.
Level = tuple[str, str]


@dataclass(slots=True)
class BookDeltaRecord:
    """``kraken.book.deltas``: one applied book message. Applied in order, the levels turn the previous
    book into this one (``is_snapshot``: they are the whole book and replace it)."""

    exchange: str
    symbol: str
    exchange_symbol: str
    is_snapshot: bool
    bids: list[Level]
    asks: list[Level]
    checksum: int
    checksum_ok: bool | None
    depth: int
    seq: int
    epoch: int
    ts_exchange_ns: int
    ts_recv_ns: int | None
    ts_emit_ns: int
    raw_partition: int
    raw_offset: int
    schema_version: int = 1



@dataclass(slots=True)
class BookSnapshotRecord:
    """``kraken.book.snapshots``: the top levels, on a time grid (``grid``) or after an exchange snapshot."""

    exchange: str
    symbol: str
    exchange_symbol: str
    reason: str
    ts_grid_ns: int | None
    ts_exchange_ns: int
    bids: list[Level]
    asks: list[Level]
    checksum: int
    seq: int
    epoch: int
    state: str
    depth: int
    schema_version: int = 1



@dataclass(slots=True)
class BookEventRecord:
    """``kraken.book.events``: a book state change (live, stale, invalidated, resyncing, restored)."""

    exchange: str
    symbol: str
    exchange_symbol: str
    state: str
    previous: str
    reason: str
    seq: int
    epoch: int
    ts_ns: int
    raw_partition: int | None
    raw_offset: int | None
    schema_version: int = 1



@dataclass(slots=True)
class BookMetricRecord:
    """``kraken.metrics`` (``metric: book``): book health over the last grid interval."""

    exchange: str
    symbol: str
    metric: str
    ts_exchange_ns: int
    best_bid: str | None
    best_ask: str | None
    spread: str | None
    mid: str | None
    bid_levels: int
    ask_levels: int
    messages: int
    checksum_ok: int
    checksum_failed: int
    latency_ms_max: float
    latency_ms_mean: float | None
    schema_version: int = 1



@dataclass(slots=True)
class SubscriptionErrorRecord:
    """``kraken.metrics`` (``metric: subscription_error``): Kraken refused a request."""

    exchange: str
    symbol: str | None
    metric: str
    error: str | None
    method: str | None
    raw_partition: int
    raw_offset: int
    schema_version: int = 1



@dataclass(slots=True)
class ExchangeStatusRecord:
    """``kraken.metrics`` (``metric: exchange_status``): Kraken's ``status`` channel changed ``system``:
    ``online``, ``maintenance`` (no data), ``cancel_only`` or ``post_only`` (no matching: books freeze)."""

    exchange: str
    symbol: str
    metric: str
    system: str
    previous: str | None
    api_version: str | None
    version: str | None
    connection_id: int | None
    ts_recv_ns: int | None
    raw_partition: int
    raw_offset: int
    schema_version: int = 1



@dataclass(slots=True)
class TradeGapRecord:
    """``kraken.metrics`` (``metric: trade_gap``): trades that were never received. Kraken's ``trade_id`` is
    a sequence per pair, so a jump names the missing ids: ``first_missing``..``last_missing``, ``missing``
    of them. Candles and volumes over that range are short by those trades."""

    exchange: str
    symbol: str
    exchange_symbol: str
    metric: str
    first_missing: int
    last_missing: int
    missing: int
    reason: str
    ts_exchange_ns: int | None
    ts_recv_ns: int | None
    raw_partition: int
    raw_offset: int
    schema_version: int = 1



@dataclass(slots=True)
class WhaleTradeRecord:
    """``kraken.metrics`` (``metric: whale_trade``): a trade whose notional reached the threshold."""

    exchange: str
    symbol: str
    metric: str
    event_id: str
    side: str
    price: str
    qty: str
    notional: str
    threshold: str
    ts_exchange_ns: int | None
    ts_recv_ns: int | None
    raw_partition: int
    raw_offset: int
    schema_version: int = 1



@dataclass(slots=True)
class TradeRecord:
    """``kraken.trades``: a normalized trade; ``event_id`` (``kraken:BTC-USD:<trade_id>``) is unique."""

    exchange: str
    symbol: str
    exchange_symbol: str
    event_id: str
    trade_id: int
    side: str
    price: str
    qty: str
    ord_type: str | None
    ts_exchange_ns: int | None
    ts_recv_ns: int | None
    raw_partition: int
    raw_offset: int
    schema_version: int = 1



@dataclass(slots=True)
class TickerRecord:
    """``kraken.tickers``: Kraken's ticker (24 h figures), normalized."""

    exchange: str
    symbol: str
    exchange_symbol: str
    bid: str | None
    bid_qty: str | None
    ask: str | None
    ask_qty: str | None
    last: str | None
    volume: str | None
    vwap: str | None
    low: str | None
    high: str | None
    change: str | None
    change_pct: str | None
    ts_exchange_ns: int | None
    ts_recv_ns: int | None
    raw_partition: int
    raw_offset: int
    schema_version: int = 1



@dataclass(slots=True)
class CandleRecord:
    """``kraken.candles``: a closed OHLCV window built from trades on exchange time."""

    exchange: str
    symbol: str
    exchange_symbol: str
    interval: str
    interval_begin_ns: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    trades: int
    buy_volume: str
    sell_volume: str
    first_trade_id: int
    last_trade_id: int
    vwap: str | None
    interval_begin: str
    interval_end_ns: int
    schema_version: int = 1



@dataclass(slots=True)
class DeadLetterRecord:
    """``kraken.deadletter``: a raw record that could not be used, with the reason and its lineage."""

    reason: str
    raw: str
    raw_key: str
    raw_partition: int
    raw_offset: int
    ts_recv_ns: int | None
    schema_version: int = 1



@dataclass(slots=True)
class ControlRecord:
    """``kraken.control``: a request to the live ingest (``action: resync`` of one pair's book)."""

    action: str
    symbol: str
    reason: str
    ts_ns: int
    schema_version: int = 1



Record = Union[
    BookDeltaRecord, BookSnapshotRecord, BookEventRecord, BookMetricRecord, SubscriptionErrorRecord,
    WhaleTradeRecord, TradeGapRecord, ExchangeStatusRecord, TradeRecord, TickerRecord, CandleRecord, DeadLetterRecord, ControlRecord,
]
RECORD_TYPES: tuple[type, ...] = Record.__args__  # type: ignore[attr-defined]


def encode(record: Record) -> bytes:
    """The JSON value of an output record (orjson serializes slotted dataclasses in field order)."""
    return orjson.dumps(record)


def as_dict(record: Record) -> dict[str, Any]:
    """The record as its JSON object (what a consumer decodes)."""
    value: dict[str, Any] = orjson.loads(encode(record))
    return value

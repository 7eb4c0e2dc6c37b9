"""Typed Kraken WebSocket v2 messages: numbers as exact decimal strings, integers as ``int``.

Each class carries a real sample of the frame it types; :mod:`models.kraken.frames` builds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(slots=True)
class BookData:
    """One pair's book message.

    Sample (``data[0]`` of a live update)::

        {"symbol":"BTC/USD","bids":[],"asks":[{"price":62803.8,"qty":0.95536416}],
         "checksum":441069893,"timestamp":"2026-08-16T23:37:05.399046Z"}
    """

    symbol: str
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]
    checksum: int | None
    timestamp: str | None


@dataclass(slots=True)
class BookFrame:
    """``{"channel":"book","type":"snapshot"|"update","data":[BookData, ...]}``."""

    is_snapshot: bool
    books: list[BookData]


@dataclass(slots=True)
class PairInfo:
    """One pair of the ``instrument`` channel: precisions and increments (decimal strings)."""

    symbol: str
    base: str
    quote: str
    status: str
    price_precision: int
    qty_precision: int
    price_increment: str | None = None
    qty_increment: str | None = None
    qty_min: str | None = None
    cost_min: str | None = None
    cost_precision: int | None = None


@dataclass(slots=True)
class InstrumentFrame:
    """``{"channel":"instrument","type":"snapshot","data":{"assets":[...],"pairs":[PairInfo, ...]}}``."""

    is_snapshot: bool
    pairs: list[PairInfo]


@dataclass(slots=True)
class Trade:
    """``{"symbol":"BTC/USD","side":"buy","price":62803.8,"qty":0.001,"ord_type":"market",
    "trade_id":84432123,"timestamp":"2026-08-16T23:37:05.399046Z"}``"""

    symbol: str
    side: str
    price: str
    qty: str
    ord_type: str
    trade_id: int
    timestamp: str


@dataclass(slots=True)
class TradeFrame:
    is_snapshot: bool
    trades: list[Trade]


@dataclass(slots=True)
class Ticker:
    """``{"symbol":"BTC/USD","bid":62802.5,"bid_qty":0.0298,"ask":62802.6,"ask_qty":1.09,"last":62802.6,
    "volume":1234.5,"vwap":62500.1,"low":61000.0,"high":63000.0,"change":802.6,"change_pct":1.29}``"""

    symbol: str
    bid: str
    bid_qty: str
    ask: str
    ask_qty: str
    last: str
    volume: str
    vwap: str
    low: str
    high: str
    change: str
    change_pct: str
    timestamp: str | None = None


@dataclass(slots=True)
class TickerFrame:
    is_snapshot: bool
    tickers: list[Ticker]


@dataclass(slots=True)
class Candle:
    """``{"symbol":"BTC/USD","open":62800.0,"high":62810.0,"low":62790.0,"close":62805.0,"vwap":62801.2,
    "trades":42,"volume":1.5,"interval_begin":"2026-08-16T23:37:00.000000000Z","interval":1,...}``"""

    symbol: str
    open: str
    high: str
    low: str
    close: str
    vwap: str
    trades: int
    volume: str
    interval_begin: str
    interval: int
    timestamp: str | None = None


@dataclass(slots=True)
class OhlcFrame:
    is_snapshot: bool
    candles: list[Candle]


#: the ``system`` values of Kraken's ``status`` channel
SYSTEM_STATUSES = ("online", "maintenance", "cancel_only", "post_only")


@dataclass(slots=True)
class StatusFrame:
    """``{"channel":"status","type":"update","data":[{"version":"2.0.10","system":"online",
    "api_version":"v2","connection_id":15113583034416118705}]}``"""

    system: str
    api_version: str | None
    version: str | None
    connection_id: int | None


@dataclass(slots=True)
class Heartbeat:
    """``{"channel":"heartbeat"}``"""


@dataclass(slots=True)
class Ack:
    """A ``subscribe``/``unsubscribe`` response, one per symbol::

        {"method":"subscribe","result":{"channel":"book","depth":25,"snapshot":true,"symbol":"BTC/USD"},
         "success":true,"time_in":"2026-08-16T23:37:03.374788Z","time_out":"2026-08-16T23:37:03.374824Z"}
        {"error":"Subscription depth not supported","method":"subscribe","success":false,...}
    """

    method: str
    success: bool
    channel: str | None = None
    symbol: str | None = None
    depth: int | None = None
    error: str | None = None
    req_id: int | None = None
    time_in: str | None = None
    time_out: str | None = None
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Pong:
    """``{"method":"pong","req_id":101,"time_in":"...","time_out":"..."}``"""

    req_id: int | None
    time_in: str | None
    time_out: str | None


@dataclass(slots=True)
class ParseError:
    """A frame that could not be understood, with the reason and the start of its text."""

    reason: str
    excerpt: str


Frame = Union[
    BookFrame, InstrumentFrame, TradeFrame, TickerFrame, OhlcFrame, StatusFrame, Heartbeat, Ack, Pong
]

"""Kraken WebSocket v2 frames parsed into typed messages, numbers kept as exact decimal strings.

:func:`parse_frame` never raises: a frame that is not valid JSON, has an unknown shape or a field of the
wrong type yields a :class:`ParseError` naming the reason, so a caller can dead-letter it and go on.

Numbers: prices, quantities and other decimals become ``str`` holding the wire token exactly
(``0.00005100`` stays ``"0.00005100"``); integers (``checksum``, ``trade_id``, ``connection_id`` which
exceeds 2**53) become ``int``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Union

import orjson

from models.numbers import NumberError, plain_text



class _Token(str):
    """A JSON number token with a fraction or exponent, kept as its exact text (already valid JSON)."""

    __slots__ = ()


_DECODER = json.JSONDecoder(parse_float=_Token)
#: A decimal sent as a JSON *string* (v1 style) must still be a plain number.
_DECIMAL_STRING = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


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


class _Bad(Exception):
    """Internal: a shape error with a user-facing reason."""


def parse_frame(raw: bytes | str) -> Frame | ParseError:
    """Parse one Kraken v2 frame; never raises."""
    try:
        text = raw.decode() if isinstance(raw, (bytes, bytearray, memoryview)) else raw
        if text.startswith('{"channel":"book"'):
            fast = _book_fast(text)
            if fast is not None:
                return fast
        elif text == '{"channel":"heartbeat"}':  # once a second on every idle connection
            return Heartbeat()
        obj = _DECODER.decode(text)
    except (UnicodeDecodeError, ValueError) as exc:
        return ParseError(f"invalid JSON: {exc}", _excerpt(raw))
    try:
        return parse_object(obj)
    except (_Bad, NumberError) as exc:
        return ParseError(str(exc), _excerpt(raw))
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        return ParseError(f"unexpected shape: {type(exc).__name__}: {exc}", _excerpt(raw))


def parse_object(obj: Any) -> Frame:
    """Type a decoded frame (decoded with floats as ``str``). Raises on a bad shape."""
    if not isinstance(obj, dict):
        raise _Bad(f"frame is a JSON {type(obj).__name__}, expected an object")
    channel = obj.get("channel")
    if channel is not None:
        parser = _CHANNELS.get(channel)
        if parser is None:
            raise _Bad(f"unknown channel {channel!r}")
        return parser(obj)
    method = obj.get("method")
    if method in ("subscribe", "unsubscribe"):
        return _ack(obj, method)
    if method == "pong":
        return Pong(_opt_int(obj, "req_id"), obj.get("time_in"), obj.get("time_out"))
    if "error" in obj or "Error" in obj:  # e.g. {"Error": "Exceeded msg rate"}: no method at all
        return Ack(str(method or ""), False, error=str(obj.get("error") or obj.get("Error")))
    raise _Bad("frame has neither 'channel' nor a known 'method'")


def _kind(obj: dict[str, Any]) -> bool:
    kind = obj.get("type")
    if kind not in ("snapshot", "update"):
        raise _Bad(f"{obj.get('channel')} frame has type {kind!r}, expected 'snapshot' or 'update'")
    return kind == "snapshot"


def _data_list(obj: dict[str, Any]) -> list[dict[str, Any]]:
    data = obj.get("data")
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise _Bad(f"{obj.get('channel')} frame 'data' must be a list of objects")
    return data


def _dec(value: Any, name: str) -> str:
    """An exact decimal string from a JSON number token (float tokens already arrive as str)."""
    if type(value) is _Token:
        return plain_text(str(value))
    if isinstance(value, str):
        return plain_text(value) if _DECIMAL_STRING.fullmatch(value) else _fail(name, value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _fail(name, value)


def _fail(name: str, value: Any) -> str:
    raise _Bad(f"field {name!r} is {value!r}, expected a decimal number")


def _int(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"field {name!r} is {value!r}, expected an integer")
    return value


def _opt_int(obj: dict[str, Any], name: str) -> int | None:
    return None if obj.get(name) is None else _int(obj, name)


def _str(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        raise _Bad(f"field {name!r} is {value!r}, expected a string")
    return value


def _levels(book: dict[str, Any], name: str) -> list[tuple[str, str]]:
    levels = book.get(name, [])
    if not isinstance(levels, list):
        raise _Bad(f"book '{name}' must be a list")
    return [(_dec(level["price"], "price"), _dec(level["qty"], "qty")) for level in levels]


def _book(obj: dict[str, Any]) -> BookFrame:
    is_snapshot = _kind(obj)
    books = [
        BookData(_str(d, "symbol"), _levels(d, "bids"), _levels(d, "asks"), _opt_int(d, "checksum"),
                 _timestamp(d))
        for d in _data_list(obj)
    ]
    return BookFrame(is_snapshot, books)


def _timestamp(d: dict[str, Any]) -> str | None:
    """A book message's timestamp; anything but a string is dropped (the fast path does the same)."""
    value = d.get("timestamp")
    return value if type(value) is str else None


#: One level exactly as Kraken writes it. ``[0-9.]+`` is enough: it only runs on text orjson accepted
#: (strict JSON: no leading zeros, no bare dots), where such a run in value position is a plain decimal
#: number, and it is ~25% cheaper than spelling out the decimal grammar.
_LEVEL = re.compile(r'\{"price":([0-9.]+),"qty":([0-9.]+)\}')


def _book_fast(text: str) -> BookFrame | None:
    """The hot path for single-pair book frames in Kraken's own layout, ~3x faster than the general one.

    orjson gives the structure (its floats are ignored) and one regex gives every level's exact
    tokens in document order. Returns ``None`` whenever the frame is not in that exact layout (level
    counts disagree, keys reordered, several pairs, bad types): the general parser then decides.
    """
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    # the caller saw text start with '{' and it parsed: obj is a dict
    data = obj.get("data")
    if type(data) is not list or len(data) != 1:
        return None
    d = data[0]
    if type(d) is not dict:
        return None
    kind = obj.get("type")
    symbol, checksum, timestamp = d.get("symbol"), d.get("checksum"), d.get("timestamp")
    bids, asks = d.get("bids", ()), d.get("asks", ())
    if (kind != "update" and kind != "snapshot") or type(symbol) is not str or type(bids) is not list \
            or type(asks) is not list or (checksum is not None and type(checksum) is not int):
        return None
    levels = _LEVEL.findall(text)
    n_bids, n_asks = len(bids), len(asks)
    if len(levels) != n_bids + n_asks:
        return None
    if not n_asks:  # most updates touch one side: no slicing then
        bid_levels, ask_levels = levels, []
    elif not n_bids:
        bid_levels, ask_levels = [], levels
    elif text.find('"asks"') < text.find('"bids"'):
        ask_levels, bid_levels = levels[:n_asks], levels[n_asks:]
    else:
        bid_levels, ask_levels = levels[:n_bids], levels[n_bids:]
    return BookFrame(kind == "snapshot", [
        BookData(symbol, bid_levels, ask_levels, checksum, timestamp if type(timestamp) is str else None)
    ])


def _instrument(obj: dict[str, Any]) -> InstrumentFrame:
    is_snapshot = _kind(obj)
    data = obj.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("pairs", []), list):
        raise _Bad("instrument frame 'data' must be an object with a 'pairs' list")
    pairs = []
    for p in data.get("pairs", []):
        pairs.append(PairInfo(
            _str(p, "symbol"), p.get("base", ""), p.get("quote", ""), p.get("status", ""),
            _int(p, "price_precision"), _int(p, "qty_precision"),
            _opt_dec(p, "price_increment"), _opt_dec(p, "qty_increment"), _opt_dec(p, "qty_min"),
            _opt_dec(p, "cost_min"), _opt_int(p, "cost_precision"),
        ))
    return InstrumentFrame(is_snapshot, pairs)


def _opt_dec(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    return None if value is None else _dec(value, name)


def _trade(obj: dict[str, Any]) -> TradeFrame:
    is_snapshot = _kind(obj)
    return TradeFrame(is_snapshot, [
        Trade(_str(t, "symbol"), _str(t, "side"), _dec(t["price"], "price"), _dec(t["qty"], "qty"),
              t.get("ord_type", ""), _int(t, "trade_id"), _str(t, "timestamp"))
        for t in _data_list(obj)
    ])


_TICKER_FIELDS = ("bid", "bid_qty", "ask", "ask_qty", "last", "volume", "vwap", "low", "high", "change",
                  "change_pct")


def _ticker(obj: dict[str, Any]) -> TickerFrame:
    is_snapshot = _kind(obj)
    return TickerFrame(is_snapshot, [
        Ticker(_str(t, "symbol"), *(_dec(t[f], f) for f in _TICKER_FIELDS), t.get("timestamp"))
        for t in _data_list(obj)
    ])


def _ohlc(obj: dict[str, Any]) -> OhlcFrame:
    is_snapshot = _kind(obj)
    return OhlcFrame(is_snapshot, [
        Candle(_str(c, "symbol"), _dec(c["open"], "open"), _dec(c["high"], "high"), _dec(c["low"], "low"),
               _dec(c["close"], "close"), _dec(c["vwap"], "vwap"), _int(c, "trades"),
               _dec(c["volume"], "volume"), _str(c, "interval_begin"), _int(c, "interval"),
               c.get("timestamp"))
        for c in _data_list(obj)
    ])


def _status(obj: dict[str, Any]) -> StatusFrame:
    d = _data_list(obj)[0]
    return StatusFrame(_str(d, "system"), d.get("api_version"), d.get("version"), _opt_int(d, "connection_id"))


def _heartbeat(obj: dict[str, Any]) -> Heartbeat:
    return Heartbeat()


def _ack(obj: dict[str, Any], method: str) -> Ack:
    success = obj.get("success")
    if not isinstance(success, bool):
        raise _Bad(f"{method} response has 'success' {success!r}, expected true or false")
    result = obj.get("result") or {}
    if not isinstance(result, dict):
        raise _Bad(f"{method} response 'result' must be an object")
    depth = result.get("depth")
    return Ack(
        method, success, result.get("channel"), result.get("symbol", obj.get("symbol")),
        depth if isinstance(depth, int) else None, obj.get("error"), _opt_int(obj, "req_id"),
        obj.get("time_in"), obj.get("time_out"), result,
    )


_CHANNELS = {
    "book": _book, "instrument": _instrument, "trade": _trade, "ticker": _ticker, "ohlc": _ohlc,
    "status": _status, "heartbeat": _heartbeat,
}


def _excerpt(raw: Any, limit: int = 200) -> str:
    text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."

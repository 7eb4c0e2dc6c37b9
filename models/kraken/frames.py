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
from typing import Any, cast

import orjson

from models import native
from models.kraken.messages import (
    Ack,
    BookData,
    BookFrame,
    Candle,
    Frame,
    Heartbeat,
    InstrumentFrame,
    OhlcFrame,
    PairInfo,
    ParseError,
    Pong,
    StatusFrame,
    Ticker,
    TickerFrame,
    Trade,
    TradeFrame,
)
from models.numbers import NumberError, plain_text


class _Token(str):
    """A JSON number token with a fraction or exponent, kept as its exact text (already valid JSON)."""

    __slots__ = ()


_DECODER = json.JSONDecoder(parse_float=_Token)
#: A decimal sent as a JSON *string* (v1 style) must still be a plain number.
_DECIMAL_STRING = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


class _Bad(Exception):
    """Internal: a shape error with a user-facing reason."""


def parse_frame(raw: bytes | str) -> Frame | ParseError:
    """Parse one Kraken v2 frame; never raises."""
    if native.enabled and type(raw) is bytes and raw.startswith(b'{"channel":"book"'):
        # the native parser takes Kraken's own book layout only (None for anything else), so what it
        # does not take, and every error, is this module's
        fast = native.parse_book(raw)
        if fast is not None:
            return BookFrame(fast[0], [BookData(fast[1], fast[2], fast[3], fast[4], fast[5])])
    try:
        text = bytes(raw).decode() if isinstance(raw, (bytes, bytearray, memoryview)) else raw
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
        return cast(Frame, parser(obj))
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


#: longest number accepted, in characters (Kraken's longest are ~20: 12 integer digits, 8 decimals).
#: Longer ones (a 400-digit price, ``1e400``) are refused here, before any arithmetic sees them.
MAX_NUMBER_CHARS = 32


def _dec(value: Any, name: str) -> str:
    """An exact decimal string from a JSON number token (float tokens already arrive as str)."""
    if type(value) is _Token:
        text = plain_text(str(value)) if len(value) <= MAX_NUMBER_CHARS else _too_long(name, value)
    elif isinstance(value, str):
        text = plain_text(value) if _DECIMAL_STRING.fullmatch(value) else _fail(name, value)
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    else:
        return _fail(name, value)
    return text if len(text) <= MAX_NUMBER_CHARS else _too_long(name, text)


def _too_long(name: str, value: Any) -> str:
    raise _Bad(f"field {name!r} has {len(str(value))} characters; numbers longer than {MAX_NUMBER_CHARS} are refused")


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
    parsed = [(_dec(level["price"], "price"), _dec(level["qty"], "qty")) for level in levels]
    for price, qty in parsed:
        if price.startswith("-") or qty.startswith("-") or not price.strip("0."):
            raise _Bad(f"book level {price} x {qty}: prices must be positive and quantities not negative")
    return parsed


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
_LEVEL = re.compile(r'\{"price":([0-9.]{1,%d}),"qty":([0-9.]{1,%d})\}' % (MAX_NUMBER_CHARS, MAX_NUMBER_CHARS))


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
    # every "price" key must be one of the book's levels: a level-shaped object elsewhere in the
    # frame (an extra field) would otherwise stand in for a level written in another layout
    if len(levels) != n_bids + n_asks or text.count('"price"') != len(levels):
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
        Ticker(_str(t, "symbol"), *(_dec(t[f], f) for f in _TICKER_FIELDS), t.get("timestamp"))  # type: ignore[call-arg]
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

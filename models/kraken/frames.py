"""Kraken WebSocket v2 frames parsed into typed messages, numbers kept as exact decimal strings.

:func:`parse_frame` never raises: a frame that is not valid JSON, has an unknown shape or a field of the
wrong type yields a :class:`ParseError` naming the reason, so a caller can dead-letter it and go on. What
Kraken never sends is refused rather than guessed at: nesting deeper than :data:`MAX_DEPTH` (checked
before decoding: the decoder recurses), ``NaN``/``Infinity``, duplicate keys (parsers disagree on which
one wins), escaped UTF-16 surrogates (not encodable as UTF-8 again), integers outside 64 bits
(not encodable in an output record), numbers, precisions and depths Kraken does not use. A reason quotes
at most a short excerpt of any value, so a huge frame makes a short reason.

Numbers: prices, quantities and other decimals become ``str`` holding the wire token exactly
(``0.00005100`` stays ``"0.00005100"``); integers (``checksum``, ``trade_id``, ``connection_id`` which
exceeds 2**53) become ``int``.
"""

from __future__ import annotations

import json
import re
import reprlib
from collections import Counter
from itertools import accumulate
from typing import Any, cast

import orjson

from models import native
from models.book import DEPTHS
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
from models.timeutil import rfc3339_ns


class _Token(str):
    """A JSON number token with a fraction or exponent, kept as its exact text (already valid JSON)."""

    __slots__ = ()


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number in JSON")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        twice = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise ValueError(f"duplicate key {_show(twice)}")
    return obj


_DECODER = json.JSONDecoder(parse_float=_Token, parse_constant=_constant, object_pairs_hook=_object)
#: A decimal sent as a JSON *string* (v1 style) must still be a plain number.
_DECIMAL_STRING = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
#: a ``\uXXXX`` escape of a UTF-16 surrogate (Kraken writes non-ASCII text, if any, as UTF-8)
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")

#: Deepest nesting accepted. Kraken's deepest frames (book: object > data > book > side > level) have 5.
MAX_DEPTH = 16
#: a JSON string (escapes included), to be cut out before brackets are counted
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [1 if b in b"[{" else -1 for b in range(256)]


def _too_deep(raw: bytes | bytearray | memoryview) -> bool:
    """Whether ``raw`` nests deeper than :data:`MAX_DEPTH`, without decoding it (the decoder recurses:
    a few thousand brackets overflow the stack). Linear, and most frames stop at the first count."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return False
    brackets = _STRING.sub(b"", bytes(raw)).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > MAX_DEPTH


class _Bad(Exception):
    """Internal: a shape error with a user-facing reason."""


def parse_frame(raw: bytes | str) -> Frame | ParseError:
    """Parse one Kraken v2 frame; never raises."""
    if native.enabled and type(raw) is bytes and raw.startswith(b'{"channel":"book"'):
        # the native parser takes Kraken's own book layout only (None for anything else), so what it
        # does not take, and every error, is this module's; it does not recurse
        try:
            fast = native.parse_book(raw)
        except Exception:  # a native bug must cost the frame, not the caller
            fast = None
        if fast is not None and fast[4] <= _MAX_CHECKSUM and _symbol_ok(fast[1]) \
                and (fast[5] is None or len(fast[5]) <= MAX_TEXT_CHARS):
            return BookFrame(fast[0], [BookData(fast[1], fast[2], fast[3], fast[4], fast[5])])
    try:
        return _parse(raw)
    except Exception as exc:  # RecursionError, MemoryError, a bug: never the caller's problem
        return ParseError(f"unparseable frame: {type(exc).__name__}: {_clip(str(exc))}", _excerpt(raw))


def _parse(raw: bytes | str) -> Frame | ParseError:
    try:
        text = raw if isinstance(raw, str) else (raw if type(raw) is bytes else bytes(raw)).decode()
        if text.startswith('{"channel":"book"'):
            fast = _book_fast(text)
            if fast is not None:
                return fast
        elif text == '{"channel":"heartbeat"}':  # once a second on every idle connection
            return Heartbeat()
        if _too_deep(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw):
            return ParseError(f"invalid JSON: nested deeper than {MAX_DEPTH} levels", _excerpt(raw))
        if "\\u" in text and _SURROGATE.search(text):
            return ParseError("invalid JSON: a \\u escape of a UTF-16 surrogate", _excerpt(raw))
        obj = _DECODER.decode(text)
    except (UnicodeDecodeError, ValueError) as exc:
        return ParseError(f"invalid JSON: {_clip(str(exc))}", _excerpt(raw))
    try:
        return parse_object(obj)
    except (_Bad, NumberError) as exc:
        return ParseError(str(exc), _excerpt(raw))
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        return ParseError(f"unexpected shape: {type(exc).__name__}: {_clip(str(exc))}", _excerpt(raw))


def parse_object(obj: Any) -> Frame:
    """Type a decoded frame (decoded with floats as ``str``). Raises on a bad shape."""
    if not isinstance(obj, dict):
        raise _Bad(f"frame is a JSON {type(obj).__name__}, expected an object")
    channel = obj.get("channel")
    if channel is not None:
        parser = _CHANNELS.get(channel) if isinstance(channel, str) else None
        if parser is None:
            raise _Bad(f"unknown channel {_show(channel)}")
        return cast(Frame, parser(obj))
    method = obj.get("method")
    if method in ("subscribe", "unsubscribe"):
        return _ack(obj, method)
    if method == "pong":
        return Pong(_opt_int(obj, "req_id"), _opt_text(obj, "time_in"), _opt_text(obj, "time_out"))
    if "error" in obj or "Error" in obj:  # e.g. {"Error": "Exceeded msg rate"}: no method at all
        return Ack(_opt_text(obj, "method") or "", False, error=_text(obj, "error" if "error" in obj else "Error"))
    raise _Bad("frame has neither 'channel' nor a known 'method'")


def _kind(obj: dict[str, Any]) -> bool:
    kind = obj.get("type")
    if kind not in ("snapshot", "update"):
        raise _Bad(f"{obj.get('channel')} frame has type {_show(kind)}, expected 'snapshot' or 'update'")
    return kind == "snapshot"


def _data_list(obj: dict[str, Any]) -> list[dict[str, Any]]:
    data = obj.get("data")
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise _Bad(f"{obj.get('channel')} frame 'data' must be a list of objects")
    return data


#: longest number accepted, in characters (Kraken's longest are ~20: 12 integer digits, 8 decimals).
#: Longer ones (a 400-digit price, ``1e400``) are refused here, before any arithmetic sees them.
MAX_NUMBER_CHARS = 32
#: most decimals of a price or quantity (the native book's limit; Kraken's pairs use at most 10)
MAX_PRECISION = 18
#: what an output record can hold (orjson writes 64-bit integers, signed or not)
_MIN_INT, _MAX_INT = -(1 << 63), (1 << 64) - 1
#: Kraken's checksum is a CRC32
_MAX_CHECKSUM = 0xFFFFFFFF
#: longest text field (a status, an error message, an order type) that goes into an output record
MAX_TEXT_CHARS = 256
MAX_SYMBOL_CHARS = 64
#: exchange times an output record can hold as integer nanoseconds: 1970 to 2262
_MAX_NS = 1 << 63

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = _repr.maxlong = 60
_repr.maxlist = _repr.maxdict = 4
_repr.maxlevel = 2


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _show(value: Any) -> str:
    """A short repr for a reason: a hostile value (a megabyte string, a deep list) stays a few words."""
    return _repr.repr(value)


def _dec(value: Any, name: str) -> str:
    """An exact decimal string from a JSON number token (float tokens already arrive as str)."""
    if type(value) is _Token:
        text = plain_text(str(value)) if len(value) <= MAX_NUMBER_CHARS else _too_long(name, value)
    elif isinstance(value, str):
        text = plain_text(value) if _DECIMAL_STRING.fullmatch(value) else _fail(name, value)
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value) if _MIN_INT <= value <= _MAX_INT else _too_long(name, value)
    else:
        return _fail(name, value)
    return text if len(text) <= MAX_NUMBER_CHARS else _too_long(name, text)


def _too_long(name: str, value: Any) -> str:
    size = len(value) if isinstance(value, str) else f"more than {MAX_NUMBER_CHARS}"
    raise _Bad(f"field {name!r} has {size} characters; numbers longer than {MAX_NUMBER_CHARS} are refused")


def _fail(name: str, value: Any) -> str:
    raise _Bad(f"field {name!r} is {_show(value)}, expected a decimal number")


def _int(obj: dict[str, Any], name: str, low: int = _MIN_INT, high: int = _MAX_INT) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"field {name!r} is {_show(value)}, expected an integer")
    if not low <= value <= high:
        raise _Bad(f"field {name!r} is {_show(value)}, out of range {low}..{high}")
    return value


def _opt_int(obj: dict[str, Any], name: str, low: int = _MIN_INT, high: int = _MAX_INT) -> int | None:
    return None if obj.get(name) is None else _int(obj, name, low, high)


def _str(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        raise _Bad(f"field {name!r} is {_show(value)}, expected a string")
    return value


def _text(obj: dict[str, Any], name: str) -> str:
    """A short string that goes into an output record."""
    value = _str(obj, name)
    if len(value) > MAX_TEXT_CHARS:
        raise _Bad(f"field {name!r} has {len(value)} characters; at most {MAX_TEXT_CHARS} are taken")
    return value


def _opt_text(obj: dict[str, Any], name: str) -> str | None:
    return None if obj.get(name) is None else _text(obj, name)


def _symbol(obj: dict[str, Any], name: str = "symbol") -> str:
    value = _str(obj, name)
    if not _symbol_ok(value):
        raise _Bad(f"field {name!r} is {_show(value)}, expected a pair like 'BTC/USD' (1 to {MAX_SYMBOL_CHARS} "
                   "ASCII characters)")
    return value


def _symbol_ok(value: str) -> bool:
    """ASCII (it keys records and names partitions), short, no control characters."""
    return value.isascii() and 0 < len(value) <= MAX_SYMBOL_CHARS and value.isprintable()


def _stamp(obj: dict[str, Any], name: str) -> str:
    """An exchange time that, when it parses, fits a record's integer nanoseconds (a malformed one is
    dropped where it is used, as before)."""
    value = _text(obj, name)
    ns = rfc3339_ns(value)
    if ns is not None and not 0 <= ns < _MAX_NS:
        raise _Bad(f"field {name!r} is {_show(value)}, not a time between 1970 and 2262")
    return value


def _opt_stamp(obj: dict[str, Any], name: str) -> str | None:
    return None if obj.get(name) is None else _stamp(obj, name)


def _levels(book: dict[str, Any], name: str) -> list[tuple[str, str]]:
    levels = book.get(name, [])
    if not isinstance(levels, list):
        raise _Bad(f"book '{name}' must be a list")
    if not all(type(level) is dict for level in levels):
        raise _Bad(f"book '{name}' must be a list of {{price, qty}} objects")
    parsed = [(_dec(level["price"], "price"), _dec(level["qty"], "qty")) for level in levels]
    for price, qty in parsed:
        if price.startswith("-") or qty.startswith("-") or not price.strip("0."):
            raise _Bad(f"book level {price} x {qty}: prices must be positive and quantities not negative")
    return parsed


def _book(obj: dict[str, Any]) -> BookFrame:
    is_snapshot = _kind(obj)
    books = [
        BookData(_symbol(d), _levels(d, "bids"), _levels(d, "asks"), _opt_int(d, "checksum", 0, _MAX_CHECKSUM),
                 _timestamp(d))
        for d in _data_list(obj)
    ]
    return BookFrame(is_snapshot, books)


def _timestamp(d: dict[str, Any]) -> str | None:
    """A book message's timestamp: a short string (a malformed one is dropped by the session), or none."""
    return _opt_text(d, "timestamp")


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
    bids, asks = d.get("bids"), d.get("asks")
    stamped = timestamp is not None
    # Kraken's book messages carry these keys (older ones no timestamp), and the frame no other: anything
    # else is left to the strict parser (so each check below is a type check)
    if (kind != "update" and kind != "snapshot") or len(obj) != 3 or len(d) != 4 + stamped \
            or type(symbol) is not str or type(bids) is not list or type(asks) is not list \
            or type(checksum) is not int or (stamped and (type(timestamp) is not str or len(timestamp) > MAX_TEXT_CHARS)) \
            or not 0 <= checksum <= _MAX_CHECKSUM or not _symbol_ok(symbol):
        return None
    levels = _LEVEL.findall(text)
    n_bids, n_asks = len(bids), len(asks)
    # every "price" key must be one of the book's levels: a level-shaped object elsewhere in the
    # frame (an extra field) would otherwise stand in for a level written in another layout
    if len(levels) != n_bids + n_asks or text.count('"price"') != len(levels):
        return None
    # Every array is the data list or a side, and every quote belongs to a key or a string value read
    # here: a duplicate key (orjson keeps the last, other parsers the first) or a level nested in a list
    # goes to the strict parser. Keys: 3 + 4 (+ timestamp) + 2 per level; strings: channel, type, symbol
    # (+ timestamp).
    if text.count("[") != 3 or text.count('"') != 2 * (10 + 2 * stamped + 2 * len(levels)):
        return None
    if not n_asks:  # most updates touch one side: no slicing then
        bid_levels, ask_levels = levels, []
    elif not n_bids:
        bid_levels, ask_levels = [], levels
    elif text.find('"asks"') < text.find('"bids"'):
        ask_levels, bid_levels = levels[:n_asks], levels[n_asks:]
    else:
        bid_levels, ask_levels = levels[:n_bids], levels[n_bids:]
    return BookFrame(kind == "snapshot", [BookData(symbol, bid_levels, ask_levels, checksum, timestamp)])


def _instrument(obj: dict[str, Any]) -> InstrumentFrame:
    is_snapshot = _kind(obj)
    data = obj.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("pairs", []), list):
        raise _Bad("instrument frame 'data' must be an object with a 'pairs' list")
    pairs = []
    for p in data.get("pairs", []):
        if not isinstance(p, dict):
            raise _Bad("instrument frame 'pairs' must be a list of objects")
        pairs.append(PairInfo(
            _symbol(p), _opt_text(p, "base") or "", _opt_text(p, "quote") or "", _opt_text(p, "status") or "",
            _int(p, "price_precision", 0, MAX_PRECISION), _int(p, "qty_precision", 0, MAX_PRECISION),
            _opt_dec(p, "price_increment"), _opt_dec(p, "qty_increment"), _opt_dec(p, "qty_min"),
            _opt_dec(p, "cost_min"), _opt_int(p, "cost_precision", 0, MAX_PRECISION),
        ))
    return InstrumentFrame(is_snapshot, pairs)


def _opt_dec(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    return None if value is None else _dec(value, name)


def _trade(obj: dict[str, Any]) -> TradeFrame:
    is_snapshot = _kind(obj)
    return TradeFrame(is_snapshot, [
        Trade(_symbol(t), _side(t), _dec(t["price"], "price"), _dec(t["qty"], "qty"),
              _opt_text(t, "ord_type") or "", _int(t, "trade_id"), _stamp(t, "timestamp"))
        for t in _data_list(obj)
    ])


def _side(t: dict[str, Any]) -> str:
    side = t.get("side")
    if side not in ("buy", "sell"):
        raise _Bad(f"field 'side' is {_show(side)}, expected 'buy' or 'sell'")
    return cast(str, side)


_TICKER_FIELDS = ("bid", "bid_qty", "ask", "ask_qty", "last", "volume", "vwap", "low", "high", "change",
                  "change_pct")


def _ticker(obj: dict[str, Any]) -> TickerFrame:
    is_snapshot = _kind(obj)
    return TickerFrame(is_snapshot, [
        Ticker(_symbol(t), *(_dec(t[f], f) for f in _TICKER_FIELDS), _opt_stamp(t, "timestamp"))  # type: ignore[call-arg]
        for t in _data_list(obj)
    ])


def _ohlc(obj: dict[str, Any]) -> OhlcFrame:
    is_snapshot = _kind(obj)
    return OhlcFrame(is_snapshot, [
        Candle(_symbol(c), _dec(c["open"], "open"), _dec(c["high"], "high"), _dec(c["low"], "low"),
               _dec(c["close"], "close"), _dec(c["vwap"], "vwap"), _int(c, "trades"),
               _dec(c["volume"], "volume"), _stamp(c, "interval_begin"), _int(c, "interval"),
               _opt_stamp(c, "timestamp"))
        for c in _data_list(obj)
    ])


def _status(obj: dict[str, Any]) -> StatusFrame:
    data = _data_list(obj)
    if not data:
        raise _Bad("status frame 'data' is empty")
    d = data[0]
    return StatusFrame(_text(d, "system"), _opt_text(d, "api_version"), _opt_text(d, "version"),
                       _opt_int(d, "connection_id"))


def _heartbeat(obj: dict[str, Any]) -> Heartbeat:
    return Heartbeat()


def _ack(obj: dict[str, Any], method: str) -> Ack:
    success = obj.get("success")
    if not isinstance(success, bool):
        raise _Bad(f"{method} response has 'success' {_show(success)}, expected true or false")
    result = obj.get("result")
    if result is None:
        result = {}
    elif not isinstance(result, dict):
        raise _Bad(f"{method} response 'result' must be an object")
    symbol = _symbol(result) if "symbol" in result else _symbol(obj) if obj.get("symbol") is not None else None
    depth = result.get("depth")
    if depth is not None and (type(depth) is not int or depth not in DEPTHS):
        raise _Bad(f"{method} response has depth {_show(depth)}, expected one of Kraken's book depths {DEPTHS}")
    return Ack(
        method, success, _opt_text(result, "channel"), symbol, depth, _opt_text(obj, "error"), _opt_int(obj, "req_id"),
        _opt_text(obj, "time_in"), _opt_text(obj, "time_out"), result,
    )


_CHANNELS = {
    "book": _book, "instrument": _instrument, "trade": _trade, "ticker": _ticker, "ohlc": _ohlc,
    "status": _status, "heartbeat": _heartbeat,
}


def _excerpt(raw: Any, limit: int = 200) -> str:
    text = raw if isinstance(raw, str) else bytes(raw[: limit * 4]).decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."

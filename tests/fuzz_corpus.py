"""A deterministic corpus of hostile ``kraken.raw`` frames: each one must cost exactly one dead letter.

Every frame is something Kraken never sends: nesting of every shape and depth (alone, and inside each
field of a valid frame), megabyte frames, ``NaN``/``Infinity``, huge exponents and integers, duplicate
keys, a wrong type in every field the parser reads of every channel, broken and truncated UTF-8,
control frames (subscribe acks, instrument, status) with bad fields, and pair frames under another
pair's key. Frames are keyed by the given (real, live) pairs, spread by a seeded generator, so a test
can mix them into live partitions. ``reason`` is a part of the dead letter's reason when the frame is
processed without any lock generation rule (with one, a frame that parses is ``unauthenticated``).

``python -m tests.fuzz_corpus`` prints a summary.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

STAMP = "2026-08-16T23:37:05.399046Z"
SEED = 19
MB = 1_000_000  # a frame of this size still fits Kafka's default 1 MiB message limit with its headers


@dataclass(frozen=True, slots=True)
class Hostile:
    name: str
    key: bytes
    value: bytes
    #: part of the dead letter's reason (None: any reason)
    reason: str | None = None


class Tok(str):
    """A JSON token written as is (a number exactly as Kraken writes it, or a broken one)."""

    __slots__ = ()


class Obj(list):  # type: ignore[type-arg]
    """An object as its (key, value) pairs, in order: duplicate keys allowed."""


def dump(value: Any) -> str:
    """JSON text of templates built from dicts, lists, str, int, bool, None, :class:`Tok`, :class:`Obj`."""
    if isinstance(value, Tok):
        return str(value)
    if isinstance(value, Obj):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in value) + "}"
    if isinstance(value, dict):
        return dump(Obj(value.items()))
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


# -- valid frames, and the kind of each field the parser reads ---------------------------------------


def book(symbol: str, kind: str = "update") -> dict[str, Any]:
    return {"channel": "book", "type": kind, "data": [
        {"symbol": symbol, "bids": [{"price": Tok("62800.1"), "qty": Tok("0.50000000")}], "asks": [],
         "checksum": 441069893, "timestamp": STAMP}]}


def instrument(symbol: str) -> dict[str, Any]:
    return {"channel": "instrument", "type": "update", "data": {"assets": [], "pairs": [
        {"symbol": symbol, "base": symbol.split("/")[0], "quote": symbol.split("/")[1], "status": "online",
         "qty_precision": 8, "qty_increment": Tok("1e-08"), "price_precision": 1, "price_increment": Tok("0.1"),
         "cost_precision": 5, "cost_min": Tok("0.5"), "qty_min": Tok("0.0001")}]}}


def trade(symbol: str) -> dict[str, Any]:
    return {"channel": "trade", "type": "update", "data": [
        {"symbol": symbol, "side": "buy", "price": Tok("62806.2"), "qty": Tok("0.20777800"), "ord_type": "market",
         "trade_id": 84432123, "timestamp": STAMP}]}


TICKER_FIELDS = ("bid", "bid_qty", "ask", "ask_qty", "last", "volume", "vwap", "low", "high", "change", "change_pct")


def ticker(symbol: str) -> dict[str, Any]:
    return {"channel": "ticker", "type": "update", "data": [
        {"symbol": symbol, **{f: Tok("62802.5") for f in TICKER_FIELDS}, "timestamp": STAMP}]}


def ohlc(symbol: str) -> dict[str, Any]:
    return {"channel": "ohlc", "type": "update", "data": [
        {"symbol": symbol, "open": Tok("62800.0"), "high": Tok("62810.0"), "low": Tok("62790.0"),
         "close": Tok("62805.0"), "vwap": Tok("62801.2"), "trades": 42, "volume": Tok("1.50000000"),
         "interval_begin": "2026-08-16T23:37:00.000000000Z", "interval": 1, "timestamp": STAMP}]}


def status(symbol: str) -> dict[str, Any]:
    return {"channel": "status", "type": "update", "data": [
        {"version": "2.0.10", "system": "online", "api_version": "v2", "connection_id": 15113583034416118705}]}


def ack(symbol: str) -> dict[str, Any]:
    return {"method": "subscribe", "result": {"channel": "book", "depth": 25, "snapshot": True, "symbol": symbol},
            "success": True, "time_in": STAMP, "time_out": STAMP, "req_id": 3}


def pong(symbol: str) -> dict[str, Any]:
    return {"method": "pong", "req_id": 101, "time_in": STAMP, "time_out": STAMP}


def refusal(symbol: str) -> dict[str, Any]:
    return {"error": "Currency pair not supported", "method": "subscribe", "success": False, "symbol": symbol}


#: per channel: its template, and (path, kind, required) of each field the parser reads ("required": the
#: frame is refused without it; an absent list or a list without its element is a valid, empty frame)
FIELDS: dict[str, tuple[Any, list[tuple[tuple[Any, ...], str, bool]]]] = {
    "book": (book, [(("channel",), "channel", True), (("type",), "kind", True), (("data",), "list", True),
                    (("data", 0), "object", False), (("data", 0, "symbol"), "symbol", True),
                    (("data", 0, "bids"), "list", False), (("data", 0, "asks"), "list", False),
                    (("data", 0, "bids", 0), "object", False), (("data", 0, "bids", 0, "price"), "decimal", True),
                    (("data", 0, "bids", 0, "qty"), "decimal", True), (("data", 0, "checksum"), "checksum", False),
                    (("data", 0, "timestamp"), "text", False)]),
    "instrument": (instrument, [(("type",), "kind", True), (("data",), "object", True),
                                (("data", "pairs"), "list", False), (("data", "pairs", 0), "object", False),
                                (("data", "pairs", 0, "symbol"), "symbol", True),
                                (("data", "pairs", 0, "base"), "text", False),
                                (("data", "pairs", 0, "quote"), "text", False),
                                (("data", "pairs", 0, "status"), "text", False),
                                (("data", "pairs", 0, "price_precision"), "precision", True),
                                (("data", "pairs", 0, "qty_precision"), "precision", True),
                                (("data", "pairs", 0, "price_increment"), "decimal", False),
                                (("data", "pairs", 0, "qty_increment"), "decimal", False),
                                (("data", "pairs", 0, "qty_min"), "decimal", False),
                                (("data", "pairs", 0, "cost_min"), "decimal", False),
                                (("data", "pairs", 0, "cost_precision"), "precision", False)]),
    "trade": (trade, [(("type",), "kind", True), (("data",), "list", True), (("data", 0), "object", False),
                      (("data", 0, "symbol"), "symbol", True), (("data", 0, "side"), "side", True),
                      (("data", 0, "price"), "decimal", True), (("data", 0, "qty"), "decimal", True),
                      (("data", 0, "ord_type"), "text", False), (("data", 0, "trade_id"), "int", True),
                      (("data", 0, "timestamp"), "stamp", True)]),
    "ticker": (ticker, [(("type",), "kind", True), (("data",), "list", True), (("data", 0), "object", False),
                        (("data", 0, "symbol"), "symbol", True), (("data", 0, "timestamp"), "stamp", False),
                        *((("data", 0, f), "decimal", True) for f in TICKER_FIELDS)]),
    "ohlc": (ohlc, [(("type",), "kind", True), (("data",), "list", True), (("data", 0), "object", False),
                    (("data", 0, "symbol"), "symbol", True),
                    *((("data", 0, f), "decimal", True) for f in ("open", "high", "low", "close", "vwap", "volume")),
                    (("data", 0, "trades"), "int", True), (("data", 0, "interval"), "int", True),
                    (("data", 0, "interval_begin"), "stamp", True), (("data", 0, "timestamp"), "stamp", False)]),
    "status": (status, [(("data",), "list", True), (("data", 0), "object", False), (("data", 0, "system"), "text", True),
                        (("data", 0, "api_version"), "text", False), (("data", 0, "version"), "text", False),
                        (("data", 0, "connection_id"), "int", False)]),
    "ack": (ack, [(("success",), "bool", True), (("result",), "object", False),
                  (("result", "channel"), "text", False), (("result", "symbol"), "symbol", False),
                  (("result", "depth"), "depth", False), (("time_in",), "text", False),
                  (("time_out",), "text", False), (("req_id",), "int", False)]),
    "pong": (pong, [(("req_id",), "int", False), (("time_in",), "text", False), (("time_out",), "text", False)]),
    "refusal": (refusal, [(("error",), "text", False), (("method",), "text", False), (("symbol",), "symbol", False)]),
}

_NOT = {"true": True, "float": Tok("1.5"), "string": "7", "list": [], "object": {}, "int": 7}
#: per kind, values of the wrong type (each excludes what the kind accepts: "1.5" is a decimal)
WRONG: dict[str, tuple[str, ...]] = {
    "decimal": ("true", "list", "object"),
    "int": ("true", "float", "string", "list", "object"),
    "checksum": ("true", "float", "string", "list", "object"),
    "precision": ("true", "float", "string", "list", "object"),
    "depth": ("true", "float", "string", "list", "object"),
    "text": ("true", "int", "list", "object"),
    "stamp": ("true", "int", "list", "object"),
    "symbol": ("true", "int", "list", "object"),
    "channel": ("true", "int", "list", "object"),
    "kind": ("true", "int", "list", "object"),
    "side": ("true", "int", "list", "object"),
    "bool": ("int", "string", "list", "object"),
    "list": ("true", "int", "string", "object"),
    "object": ("true", "int", "string", "list"),
}
#: per kind, values of the right type that are still wrong
BAD_VALUES: dict[str, tuple[Any, ...]] = {
    "decimal": ("abc", "", Tok("1e400"), Tok("-1e-999999999"), "1" * 40, Tok("1" * 40)),
    "int": (Tok(str(1 << 64)), Tok(str(-(1 << 63) - 1)), Tok("1" * 30)),
    "checksum": (Tok(str(1 << 32)), -1, Tok("1" * 19)),
    "precision": (-1, 19, 99, 1 << 40),
    "depth": (0, 7, -25, 1 << 31),
    "text": ("x" * 300,),
    "stamp": ("9999-12-31T23:59:59.000000Z", "1969-12-31T23:59:59.000000Z", "x" * 300),
    "symbol": ("", "BTC/ÜSD", "BTC\u0001USD", "A" * 65, "\ud800"),
    "kind": ("delta", ""),
    "side": ("long", ""),
    "channel": ("orders", ""),
}


def _at(template: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A deep copy of ``template`` with ``value`` at ``path`` (``DROP``: the field removed)."""
    if not path:
        return value
    copy = json.loads(dump(template), parse_float=Tok, parse_int=Tok)  # tokens stay exact
    node = copy
    for step in path[:-1]:
        node = node[step]
    if value is DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return copy


DROP = object()


def deep(shape: str, depth: int, leaf: str = "1") -> str:
    """Nesting ``depth`` levels deep: arrays, objects or both alternating; ``open``: never closed."""
    if shape == "array":
        return "[" * depth + leaf + "]" * depth
    if shape == "object":
        return '{"a":' * depth + leaf + "}" * depth
    if shape == "mixed":
        pairs, odd = divmod(depth, 2)
        return '[{"a":' * pairs + "[" * odd + leaf + "]" * odd + "}]" * pairs
    return "[" * depth  # "open": truncated


def _replace_value(template: Any, path: tuple[Any, ...], text: str) -> str:
    """The template's JSON with the value at ``path`` replaced by raw ``text``."""
    marker = "\u0000MARK\u0000"
    return dump(_at(template, path, marker)).replace(json.dumps(marker), text)


def corpus(pairs: Sequence[str], seed: int = SEED) -> list[Hostile]:
    """The hostile frames, keyed by ``pairs`` (at least two: misfiled frames need another key)."""
    assert len(pairs) >= 2
    rng = random.Random(seed)
    out: list[Hostile] = []

    def add(name: str, value: str | bytes, reason: str | None = None, key: str | None = None) -> None:
        data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        out.append(Hostile(name, (key or rng.choice(pairs)).encode(), data, reason))

    symbol = pairs[0]
    frames: list[Iterator[tuple[str, str | bytes, str | None]]] = [
        _nesting(symbol, rng), _megabytes(symbol), _numbers(symbol), _duplicates(symbol), _wrong_fields(symbol),
        _encodings(symbol)]
    for group in frames:
        for name, value, reason in group:
            add(name, value, reason)
    for name, text, why, key in _misplaced(pairs):
        add(name, text, why, key)
    return out


def _nesting(symbol: str, rng: random.Random) -> Iterator[tuple[str, str, str]]:
    why = "nested deeper than"
    for shape in ("array", "object", "mixed", "open"):
        for size in (17, 1000, 3000, 40000):  # 4 KB to 120 KB at the deep end
            yield f"deep {shape} {size}", deep(shape, size), why
    # inside every field (and in a new one) of a valid frame of each channel
    for channel, (template, fields) in FIELDS.items():
        for path, _, _ in fields:
            shape = rng.choice(("array", "object", "mixed"))
            yield f"deep {shape} in {channel} {'.'.join(map(str, path))}", \
                _replace_value(template(symbol), path, deep(shape, rng.randrange(20, 5000))), why
        yield f"deep extra field in {channel}", _replace_value(template(symbol), ("extra",), deep("array", 3000)), why
    # nested but not too deep where Kraken has a flat value: a wrong type
    yield "shallow nesting as a price", _replace_value(book(symbol), ("data", 0, "bids", 0, "price"),
                                                        deep("array", 10)), "expected a decimal number"


def _megabytes(symbol: str) -> Iterator[tuple[str, str, str]]:
    level = '{"price":62800.1,"qty":0.50000000},'
    levels = level * ((MB - 200) // len(level))
    yield "1 MB snapshot with a bad last level", (
        f'{{"channel":"book","type":"snapshot","data":[{{"symbol":"{symbol}","bids":[{levels}'
        '{"price":62800.1,"qty":"x"}],"asks":[],"checksum":1}]}'), "expected a decimal number"
    yield "1 MB symbol", dump(_at(book(symbol), ("data", 0, "symbol"), "B" * MB)), "expected a pair"
    yield "1 MB timestamp", dump(_at(book(symbol), ("data", 0, "timestamp"), "2" * MB)), "characters"
    yield "1 MB of whitespace", '{"channel":"book",' + " " * MB + '"type":"upd"}', "expected 'snapshot'"
    yield "1 MB integer", _replace_value(trade(symbol), ("data", 0, "trade_id"), "9" * MB), "invalid JSON"
    yield "1 MB decimal", _replace_value(book(symbol), ("data", 0, "bids", 0, "qty"), "0." + "1" * MB), "numbers longer"
    yield "1 MB decimal string", dump(_at(ticker(symbol), ("data", 0, "change"), "1" * MB)), "numbers longer"
    yield "1 MB of empty lists", _replace_value(book(symbol), ("data",), "[" + "[]," * (MB // 3) + "[]]"), \
        "must be a list of objects"
    yield "1 MB of escapes", dump(_at(book(symbol), ("data", 0, "symbol"), '"' * (MB // 2))), "expected a pair"
    pair = dump(instrument(symbol)["data"]["pairs"][0])
    many = ",".join([pair] * (MB // len(pair)))
    yield "1 MB instrument with a bad last pair", (
        '{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[' + many
        + ',{"symbol":"X/Y","price_precision":"1","qty_precision":8}]}}'), "expected an integer"


def _numbers(symbol: str) -> Iterator[tuple[str, str, str]]:
    fields: list[tuple[Callable[[str], dict[str, Any]], tuple[Any, ...]]] = [
              (book, ("data", 0, "bids", 0, "price")), (book, ("data", 0, "bids", 0, "qty")),
              (book, ("data", 0, "checksum")), (trade, ("data", 0, "price")), (trade, ("data", 0, "trade_id")),
              (ticker, ("data", 0, "change")), (instrument, ("data", "pairs", 0, "price_precision")),
              (instrument, ("data", "pairs", 0, "qty_increment")), (ack, ("result", "depth")),
              (status, ("data", 0, "connection_id")), (ohlc, ("data", 0, "interval"))]
    for template, path in fields:
        where = f"{template.__name__} {'.'.join(map(str, path))}"
        for token in ("NaN", "Infinity", "-Infinity"):
            yield f"{token} as {where}", _replace_value(template(symbol), path, token), "is not a number in JSON"
        for token in ("1e999999999", "1E+400", "-9e-99999", "1" + "0" * 5000):
            yield f"{token[:12]} as {where}", _replace_value(template(symbol), path, token), ""


def _duplicates(symbol: str) -> Iterator[tuple[str, str, str]]:
    why = "duplicate key"
    b = book(symbol)
    yield "duplicate type", dump(Obj([*b.items(), ("type", "snapshot")])), why
    level = Obj([("price", Tok("62800.1")), ("qty", Tok("0.5")), ("price", Tok("1.0"))])
    yield "duplicate price", _replace_value(b, ("data", 0, "bids", 0), dump(level)), why
    data = book(symbol)["data"][0]
    for name in ("symbol", "checksum", "bids", "timestamp"):
        twice = Obj([*data.items(), (name, data[name])])
        yield f"duplicate {name}", _replace_value(b, ("data", 0), dump(twice)), why
    pair = instrument(symbol)["data"]["pairs"][0]
    yield "duplicate price_precision", _replace_value(instrument(symbol), ("data", "pairs", 0),
                                                      dump(Obj([*pair.items(), ("price_precision", 2)]))), why
    result = ack(symbol)["result"]
    yield "duplicate depth", _replace_value(ack(symbol), ("result",), dump(Obj([*result.items(), ("depth", 10)]))), why
    t = trade(symbol)["data"][0]
    yield "duplicate trade_id", _replace_value(trade(symbol), ("data", 0), dump(Obj([*t.items(), ("trade_id", 1)]))), why


def _wrong_fields(symbol: str) -> Iterator[tuple[str, str, str | None]]:
    for channel, (template, fields) in FIELDS.items():
        for path, kind, required in fields:
            where = f"{channel} {'.'.join(map(str, path))}"
            for wrong in WRONG[kind]:
                yield f"{wrong} as {where}", dump(_at(template(symbol), path, _NOT[wrong])), None
            for value in BAD_VALUES.get(kind, ()):
                yield f"{str(value)[:12]!r} as {where}", _replace_value(template(symbol), path, dump(value)), None
            if required:
                yield f"no {where}", dump(_at(template(symbol), path, DROP)), None
            if required and kind not in ("object", "list"):
                yield f"null as {where}", dump(_at(template(symbol), path, None)), None


def _encodings(symbol: str) -> Iterator[tuple[str, bytes, str]]:
    why = "invalid JSON"
    good = dump(book(symbol)).encode()
    yield "cut in a 2-byte character", good[:40] + "é".encode()[:1], why
    yield "cut in a 3-byte character", good[:60] + "€".encode()[:2], why
    yield "cut in a 4-byte character", good.replace(b'"bids"', '"bids\U0001f600"'.encode()[:-3]), why
    yield "a lone continuation byte", good.replace(b"BTC", b"B\x80C", 1) if b"BTC" in good else good[:30] + b"\x80", why
    yield "an overlong slash", good.replace(b"/", b"\xc0\xaf", 1), why
    yield "an encoded surrogate", good.replace(b'"update"', b'"upd\xed\xa0\x80te"'), why
    yield "a UTF-16 frame", dump(book(symbol)).encode("utf-16"), why
    yield "a UTF-8 byte order mark", b"\xef\xbb\xbf" + good, why
    yield "an escaped surrogate", dump(status(symbol)).replace('"online"', '"\\ud800"').encode(), "surrogate"
    yield "an escaped surrogate pair", dump(trade(symbol)).replace('"market"', '"\\ud83d\\ude00"').encode(), "surrogate"
    yield "non-ASCII symbol", dump(book(symbol)).replace(symbol, "BTC/ÜSD").encode(), "expected a pair"
    yield "empty", b"", why
    yield "only whitespace", b" \n\t ", why
    for scalar in (b"null", b"5", b'"book"', b"[]", b"true"):
        yield f"a bare {scalar.decode()}", scalar, "expected an object"
    yield "an empty object", b"{}", "neither 'channel' nor a known 'method'"
    yield "a null channel", b'{"channel":null}', "neither 'channel' nor a known 'method'"
    yield "heartbeat with a tail", b'{"channel":"heartbeat"}x', why


def _misplaced(pairs: Sequence[str]) -> Iterator[tuple[str, str, str, str]]:
    """Well-formed frames that must still change nothing: a pair's frame under another pair's key, a pair
    this cluster does not subscribe, a book time no record can hold."""
    one, other = pairs[0], pairs[1]
    for template in (book, trade, ticker, ack):
        yield f"{template.__name__} of {one} under {other}", dump(template(one)), "misfiled", other
    snapshot = book(one, "snapshot")
    yield f"snapshot of {one} under {other}", dump(snapshot), "misfiled", other
    for template in (book, trade, ack):
        yield f"{template.__name__} of FAKE/USD under its key", dump(template("FAKE/USD")), "not subscribed", "FAKE/USD"
    for stamp in ("9999-12-31T23:59:59.000000Z", "1900-01-01T00:00:00.000000Z"):
        yield f"book at {stamp[:4]}", dump(_at(book(one), ("data", 0, "timestamp"), stamp)), "not a time", one


if __name__ == "__main__":
    frames = corpus(["BTC/USD", "ETH/USD"])
    print(f"{len(frames)} frames, {sum(len(f.value) for f in frames) / 1e6:.1f} MB")
    for f in frames[:: max(1, len(frames) // 40)]:
        print(f"  {f.key.decode():9} {len(f.value):8} {f.name}")

"""Frames written exactly as Kraken writes them: JSON number tokens carrying the pair's precision.

``json.dumps`` cannot write ``0.00005100`` (a float loses the zeros), so the book, trade, ticker and
ohlc frames are assembled as text from decimal strings.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson

from sim.exchange import SimTrade
from sim.pairs import PairSpec

Pair = tuple[str, str]
_second_prefix: dict[int, str] = {}


def rfc3339(ts_ns: int) -> str:
    """``2026-08-16T23:37:03.693545Z`` (microseconds, as Kraken's book and trade timestamps)."""
    seconds, rest = divmod(ts_ns, 1_000_000_000)
    prefix = _second_prefix.get(seconds)
    if prefix is None:
        if len(_second_prefix) > 4096:
            _second_prefix.clear()
        prefix = _second_prefix[seconds] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{prefix}.{rest // 1000:06d}Z"


def rfc3339_nanos(ts_ns: int) -> str:
    """``2026-08-16T23:37:00.000000000Z``: Kraken's ``interval_begin`` form."""
    seconds, rest = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest:09d}Z"


def _levels(levels: Iterable[Pair]) -> str:
    return ",".join([f'{{"price":{p},"qty":{q}}}' for p, q in levels])


def book(symbol: str, is_snapshot: bool, bids: Iterable[Pair], asks: Iterable[Pair], checksum: int,
         ts_ns: int) -> str:
    kind = "snapshot" if is_snapshot else "update"
    return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}","bids":[{_levels(bids)}],'
            f'"asks":[{_levels(asks)}],"checksum":{checksum},"timestamp":"{rfc3339(ts_ns)}"}}]}}')


def trades(symbol: str, is_snapshot: bool, items: Iterable[SimTrade], ts_ns: int) -> str:
    kind = "snapshot" if is_snapshot else "update"
    stamp = rfc3339(ts_ns)
    body = ",".join([
        f'{{"symbol":"{symbol}","side":"{t.side}","price":{t.price},"qty":{t.qty},'
        f'"ord_type":"{t.ord_type}","trade_id":{t.trade_id},'
        f'"timestamp":"{rfc3339(t.ts_ns) if t.ts_ns and t.ts_ns != ts_ns else stamp}"}}'
        for t in items
    ])
    return f'{{"channel":"trade","type":"{kind}","data":[{body}]}}'


def ticker(symbol: str, is_snapshot: bool, fields: dict[str, str], ts_ns: int) -> str:
    kind = "snapshot" if is_snapshot else "update"
    body = ",".join(f'"{k}":{v}' for k, v in fields.items())
    return (f'{{"channel":"ticker","type":"{kind}","data":[{{"symbol":"{symbol}",{body},'
            f'"timestamp":"{rfc3339(ts_ns)}"}}]}}')


def ohlc(symbol: str, is_snapshot: bool, candles: Iterable[dict[str, str]], ts_ns: int) -> str:
    kind = "snapshot" if is_snapshot else "update"
    body = ",".join(
        f'{{"symbol":"{symbol}",' + ",".join(f'"{k}":{v}' for k, v in c.items()) + "}" for c in candles
    )
    return f'{{"channel":"ohlc","type":"{kind}","data":[{body}],"timestamp":"{rfc3339(ts_ns)}"}}'


def _increment(precision: int) -> str:
    # the instrument channel writes increments as Kraken's JSON encoder does: 0.1, 0.0001, 1e-08
    return "1" if precision == 0 else repr(float(f"1e-{precision}"))


def instrument(specs: Iterable[PairSpec]) -> str:
    pairs = ",".join(
        f'{{"symbol":"{s.symbol}","base":"{s.base}","quote":"{s.quote}","status":"online",'
        f'"qty_precision":{s.qty_precision},"qty_increment":{_increment(s.qty_precision)},'
        f'"price_precision":{s.price_precision},"price_increment":{_increment(s.price_precision)},'
        f'"cost_precision":5,"qty_min":{_increment(min(s.qty_precision, 4))}}}'
        for s in specs
    )
    return f'{{"channel":"instrument","type":"snapshot","data":{{"assets":[],"pairs":[{pairs}]}}}}'


def status(connection_id: int, system: str = "online") -> str:
    return ('{"channel":"status","type":"update","data":[{"version":"2.0.10","system":"%s",'
            '"api_version":"v2","connection_id":%d}]}' % (system, connection_id))


HEARTBEAT = '{"channel":"heartbeat"}'


def response(method: str, *, result: dict[str, Any] | None = None, error: str | None = None,
             symbol: str | None = None, req_id: int | None = None, time_in_ns: int) -> str:
    """A subscribe/unsubscribe/pong response in Kraken's key order."""
    out: dict[str, Any] = {}
    if error is not None:
        out["error"] = error
    out["method"] = method
    if result is not None:
        out["result"] = result
    if method != "pong":
        out["success"] = error is None
    if symbol is not None and error is not None:
        out["symbol"] = symbol
    out["time_in"] = rfc3339(time_in_ns)
    out["time_out"] = rfc3339(time.time_ns())
    if req_id is not None:
        out["req_id"] = req_id
    return orjson.dumps(out).decode()

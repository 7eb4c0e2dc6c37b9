"""Client requests to the simulator: ``subscribe``, ``unsubscribe`` and ``ping``, answered as Kraken does.

Sample request and the per-symbol ack Kraken sends back::

    {"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":25},"req_id":7}
    {"method":"subscribe","result":{"channel":"book","depth":25,"snapshot":true,"symbol":"BTC/USD"},
     "success":true,"time_in":"2026-08-16T23:37:03.374788Z","time_out":"2026-08-16T23:37:03.374824Z",
     "req_id":7}

Errors use Kraken's strings where they are known (``Subscription depth not supported``,
``Currency pair not supported XBT/USD``, ``Subscription name invalid``, ``Exceeded msg rate``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from models.book import DEPTHS
from sim import render
from sim.stats import OHLC_INTERVALS

if TYPE_CHECKING:
    from sim.server import Client, Simulator

CHANNELS = ("book", "trade", "ticker", "ohlc", "instrument")


async def handle_request(sim: Simulator, client: Client, message: str | bytes, time_in: int) -> None:
    def reply(method: str, **kwargs: Any) -> None:
        sim.enqueue(client, render.response(method, time_in_ns=time_in, **kwargs))

    try:
        request = orjson.loads(message)
    except orjson.JSONDecodeError:
        reply("", error="Malformed request: not JSON")
        return
    if not isinstance(request, dict):
        reply("", error="Malformed request: expected a JSON object")
        return
    method, req_id = request.get("method"), request.get("req_id")
    if req_id is not None and not isinstance(req_id, int):
        reply(str(method), error="req_id must be an integer")
        return
    if method == "ping":
        if not sim.faults.mute_pongs:
            reply("pong", req_id=req_id)
        return
    if method not in ("subscribe", "unsubscribe"):
        reply(str(method), error=f"Method not found: {method}", req_id=req_id)
        return
    if sim.replay is not None:
        await sim.replay.serve(sim, client, request)
        return
    params = request.get("params")
    if not isinstance(params, dict):
        reply(method, error="Missing or invalid params", req_id=req_id)
        return
    channel = params.get("channel")
    if channel not in CHANNELS:
        reply(method, error="Subscription name invalid", req_id=req_id)
        return
    if channel == "instrument":
        _instrument(sim, client, method, params, reply, req_id)
        return
    symbols = params.get("symbol")
    if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
        reply(method, error="Invalid params: symbol must be a non-empty list of strings", req_id=req_id)
        return
    depth = params.get("depth", 10)
    if channel == "book" and depth not in DEPTHS:
        reply(method, error="Subscription depth not supported", req_id=req_id)
        return
    interval = params.get("interval")
    if channel == "ohlc" and interval not in OHLC_INTERVALS:
        reply(method, error="Subscription ohlc interval not supported", req_id=req_id)
        return
    default_snapshot = channel != "trade"
    snapshot = params.get("snapshot", default_snapshot)
    for symbol in symbols:
        if symbol not in sim.specs:
            reply(method, error=f"Currency pair not supported {symbol}", symbol=symbol, req_id=req_id)
        elif method == "subscribe" and sim.faults.take_rejection():
            reply(method, error="Exceeded msg rate", symbol=symbol, req_id=req_id)
        elif method == "subscribe":
            _subscribe(sim, client, channel, symbol, depth, interval, bool(snapshot), reply, req_id)
        else:
            _unsubscribe(client, channel, symbol, depth, interval, reply, req_id)
    sim.wake()


def _result(channel: str, symbol: str, depth: int, interval: int | None, snapshot: bool | None) -> dict[str, Any]:
    result: dict[str, Any] = {"channel": channel}
    if channel == "book":
        result["depth"] = depth
    if channel == "ohlc":
        result["interval"] = interval
    if snapshot is not None:
        result["snapshot"] = snapshot
    result["symbol"] = symbol
    return result


def _subscribe(sim: Simulator, client: Client, channel: str, symbol: str, depth: int,
               interval: int | None, snapshot: bool, reply: Any, req_id: int | None) -> None:
    already = (
        (channel == "book" and symbol in client.book) or (channel == "trade" and symbol in client.trade)
        or (channel == "ticker" and symbol in client.ticker)
        or (channel == "ohlc" and interval in client.ohlc.get(symbol, ()))
    )
    if already:
        reply("subscribe", error="Already subscribed", symbol=symbol, req_id=req_id)
        return
    reply("subscribe", result=_result(channel, symbol, depth, interval, snapshot), req_id=req_id)
    market, now = sim.market(symbol), time.time_ns()
    stats = sim.stats[symbol]
    if channel == "book":
        client.book[symbol] = depth
        live = sum(1 for c in sim.clients if symbol in c.book)  # a rotation shows 2: make before break
        sim.book_overlap[symbol] = max(sim.book_overlap.get(symbol, 0), live)
        if snapshot:
            bids, asks, checksum = market.snapshot(depth)
            sim.enqueue(client, render.book(symbol, True, bids, asks, checksum, now))
    elif channel == "trade":
        client.trade.add(symbol)
        if snapshot and stats.recent:  # Kraken's trade snapshot: the last 50 trades, oldest first
            sim.enqueue(client, render.trades(symbol, True, list(stats.recent), now))
    elif channel == "ticker":
        client.ticker.add(symbol)
        if snapshot:
            sim.enqueue(client, render.ticker(symbol, True, stats.ticker(*market.best()), now))
    elif channel == "ohlc":
        assert interval is not None
        client.ohlc.setdefault(symbol, set()).add(interval)
        if snapshot:
            sim.enqueue(client, render.ohlc(symbol, True, [stats.candle(interval, now)], now))


def _unsubscribe(client: Client, channel: str, symbol: str, depth: int, interval: int | None,
                 reply: Any, req_id: int | None) -> None:
    found = False
    if channel == "book" and client.book.get(symbol) == depth:
        del client.book[symbol]
        found = True
    elif channel == "trade" and symbol in client.trade:
        client.trade.discard(symbol)
        found = True
    elif channel == "ticker" and symbol in client.ticker:
        client.ticker.discard(symbol)
        found = True
    elif channel == "ohlc" and interval is not None and interval in client.ohlc.get(symbol, ()):
        client.ohlc[symbol].discard(interval)
        if not client.ohlc[symbol]:
            del client.ohlc[symbol]
        found = True
    if found:
        reply("unsubscribe", result=_result(channel, symbol, depth, interval, None), req_id=req_id)
    else:
        reply("unsubscribe", error="Subscription Not Found", symbol=symbol, req_id=req_id)


def _instrument(sim: Simulator, client: Client, method: str, params: dict[str, Any], reply: Any,
                req_id: int | None) -> None:
    if method == "unsubscribe":
        client.instrument = False
        reply(method, result={"channel": "instrument"}, req_id=req_id)
        return
    snapshot = bool(params.get("snapshot", True))
    client.instrument = True
    reply(method, result={"channel": "instrument", "snapshot": snapshot}, req_id=req_id)
    if snapshot:
        sim.enqueue(client, render.instrument(sim.specs.values()))

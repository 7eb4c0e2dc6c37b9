"""Kraken v2 wire rules beyond the frame parser: which pair a frame belongs to, requests. Pure.

The ingest keys ``kraken.raw`` records with :func:`frame_key`; the ingest and ``krakenflow record``
build their requests with :func:`request`.
"""

from __future__ import annotations

import orjson


def frame_key(text: str) -> str | None:
    """The pair a frame belongs to (``BTC/USD``), or None for connection-level frames.

    Instrument frames list every pair and status/heartbeat frames none: those are connection-level.
    Subscribe acks carry their symbol and go with the pair, so the depth reaches its book agent in order.
    """
    if text.startswith('{"channel":"instrument"') or text.startswith('{"channel":"heartbeat"'):
        return None
    start = text.find('"symbol":"')
    if start < 0:
        return None
    start += 10
    end = text.find('"', start)
    return text[start:end] if end > start else None


def channel_of(text: str) -> str:
    """The channel of a frame (``book``), or ``response`` for request acknowledgements."""
    if text.startswith('{"channel":"'):
        end = text.find('"', 12)
        return text[12:end]
    return "response"


def request(method: str, channel: str, symbols: list[str] | None, depth: int, req_id: int) -> bytes:
    """A subscribe/unsubscribe request: ``{"method":"subscribe","params":{"channel":"book",...},"req_id":7}``."""
    params: dict[str, object] = {"channel": channel}
    if symbols is not None:
        params["symbol"] = symbols
    if channel == "book":
        params["depth"] = depth
    elif channel == "trade" and method == "subscribe":
        params["snapshot"] = True  # the last 50 trades: a short break in the feed leaves none missing
    elif channel == "ohlc":
        params["interval"] = 1  # Kraken keys ohlc subscriptions by interval; candles are built from trades
    return orjson.dumps({"method": method, "params": params, "req_id": req_id})


def subscribe_requests(symbols: list[str], depth: int, channels: tuple[str, ...]) -> list[bytes]:
    """What a recorder (or the ingest) sends first: instrument, then each channel."""
    return [request("subscribe", "instrument", None, depth, 1)] + [
        request("subscribe", channel, symbols, depth, req_id) for req_id, channel in enumerate(channels, 2)
    ]

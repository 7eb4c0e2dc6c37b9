"""One Kraken v2 WebSocket connection: subscribe, hand every frame on verbatim, reconnect, resync.

The connection does not interpret book data; it only learns enough to stay healthy:

* reconnect with exponential backoff, full jitter and a cap, then resubscribe (Kraken has no resume:
  every (re)subscription yields a fresh snapshot);
* per-subscription staleness: a pair whose book sent nothing for ``stale_after`` seconds is resynced
  (heartbeats alone do not count as alive: they keep flowing when a subscription is dead);
* per-pair resync on request (unsubscribe + subscribe of that pair's book only), rate-limited.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

log = logging.getLogger("krakenflow.ingest")

#: ``on_frame(text, recv_ns, connection_id, seq, key)``: key is the pair, or None for connection frames.
FrameSink = Callable[[str, int, str, int, "str | None"], Awaitable[None]]


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with full jitter and a cap (AWS architecture blog's "full jitter")."""

    base: float = 0.5
    cap: float = 30.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** self.attempt))
        self.attempt += 1
        return self.rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


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


class KrakenConnection:
    """A connection for one set of pairs; :meth:`run` until cancelled."""

    def __init__(
        self, url: str, pairs: tuple[str, ...], depth: int, channels: tuple[str, ...], sink: FrameSink,
        connection_id: str, *, stale_after: float = 15.0, resync_min_interval: float = 5.0,
        backoff: Backoff | None = None, with_instrument: bool = True,
    ) -> None:
        self.url, self.pairs, self.depth, self.channels = url, pairs, depth, channels
        self.sink = sink
        self.connection_id = connection_id
        self.stale_after = stale_after
        self.resync_min_interval = resync_min_interval
        self.backoff = backoff or Backoff()
        self.with_instrument = with_instrument
        self.ws: ClientConnection | None = None
        self.connected = asyncio.Event()
        self.seq = 0
        self.reconnects: dict[str, int] = {}
        self.last_book: dict[str, float] = {}
        self.last_resync: dict[str, float] = {}
        self.resyncs = 0
        self._req_id = 100

    async def run(self) -> None:
        while True:
            reason = await self._session()
            self.connected.clear()
            self.reconnects[reason] = self.reconnects.get(reason, 0) + 1
            delay = self.backoff.next_delay()
            log.warning("kraken connection %s lost (%s); reconnecting in %.1f s", self.connection_id, reason, delay)
            await asyncio.sleep(delay)  # backoff between reconnects: Kraken bans fast reconnect loops

    async def _session(self) -> str:
        try:
            async with connect(self.url, max_size=2**24, compression=None, open_timeout=10,
                               ping_interval=20, ping_timeout=20, max_queue=None) as ws:
                self.ws = ws
                await self._subscribe_all(ws)
                self.connected.set()
                watchdog = asyncio.create_task(self._watch_staleness())
                try:
                    async for message in ws:
                        text = message if isinstance(message, str) else message.decode()
                        await self._on_message(text)
                finally:
                    watchdog.cancel()
                return f"closed {ws.close_code}"
        except ConnectionClosed as exc:
            return f"closed {exc.rcvd.code if exc.rcvd else 1006}"
        except (OSError, asyncio.TimeoutError, InvalidHandshake) as exc:
            return type(exc).__name__
        except InvalidURI as exc:
            raise SystemExit(f"KRAKENFLOW_KRAKEN_URL is not a WebSocket URL: {exc}") from exc
        finally:
            self.ws = None

    async def _on_message(self, text: str) -> None:
        recv_ns = time.time_ns()
        key = frame_key(text)
        if key is not None and text.startswith('{"channel":"book"'):
            self.last_book[key] = time.monotonic()
            self.backoff.reset()  # data flows: the next drop starts from a short delay again
        seq = self.seq
        self.seq += 1
        await self.sink(text, recv_ns, self.connection_id, seq, key)

    def _next_id(self) -> int:
        self._req_id += 1
        return self._req_id

    def _request(self, method: str, channel: str, symbols: list[str] | None) -> str:
        params: dict[str, object] = {"channel": channel}
        if symbols is not None:
            params["symbol"] = symbols
        if channel == "book":
            params["depth"] = self.depth
        elif channel == "ohlc":
            params["interval"] = 1  # Kraken keys ohlc subscriptions by interval; candles are built from trades
        return orjson.dumps({"method": method, "params": params, "req_id": self._next_id()}).decode()

    async def _subscribe_all(self, ws: ClientConnection) -> None:
        if self.with_instrument:
            await ws.send(self._request("subscribe", "instrument", None))
        now = time.monotonic()
        for pair in self.pairs:
            self.last_book[pair] = now  # staleness counts from the subscription
        for channel in self.channels:
            await ws.send(self._request("subscribe", channel, list(self.pairs)))

    async def resync(self, pair: str, reason: str) -> bool:
        """Unsubscribe and resubscribe one pair's book, at most once per ``resync_min_interval``."""
        ws = self.ws
        now = time.monotonic()
        if ws is None or pair not in self.pairs or now - self.last_resync.get(pair, -1e9) < self.resync_min_interval:
            return False
        self.last_resync[pair] = now
        self.last_book[pair] = now
        self.resyncs += 1
        log.info("resync %s on %s: %s", pair, self.connection_id, reason)
        try:
            await ws.send(self._request("unsubscribe", "book", [pair]))
            await ws.send(self._request("subscribe", "book", [pair]))
        except ConnectionClosed:
            return False  # the reconnect resubscribes everything anyway
        return True

    def stale_pairs(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        return [p for p in self.pairs if now - self.last_book.get(p, now) > self.stale_after]

    async def _watch_staleness(self) -> None:
        while True:
            await asyncio.sleep(1.0)  # staleness is judged in whole seconds
            for pair in self.stale_pairs():
                await self.resync(pair, f"no book data for {self.stale_after:.0f} s")

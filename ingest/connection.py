"""One Kraken v2 WebSocket connection: subscribe, hand every frame on verbatim, reconnect, resync.

The connection does not interpret book data; it only learns enough to stay healthy:

* reconnect with exponential backoff, full jitter and a cap, then resubscribe (Kraken has no resume:
  every (re)subscription yields a fresh snapshot);
* per-subscription staleness: a pair whose book sent nothing for ``stale_after`` seconds is resynced
  (heartbeats alone do not count as alive: they keep flowing when a subscription is dead);
* per-pair resync on request (unsubscribe + subscribe of that pair's book only), rate-limited;
* Kraken's application-level ``ping``: no ``pong`` within ``ping_timeout`` closes the connection;
* close codes by meaning (:data:`CLOSE_CODES`): 1008/1013 wait ``policy_wait``, 1001/1012 come back at
  once; after any other failure the next of ``urls`` is tried;
* every connect goes through the ingest's shared :class:`ConnectLimiter` (Kraken limits connects per IP),
  and first waits for ``ready`` (the ingest's say: Kafka takes frames, the lock is not in doubt), so a
  connection dropped because Kafka was away comes back once, when Kafka is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from models.backoff import Backoff
from models.connect_limit import ConnectLimiter
from models.kraken.wire import frame_key, request

log = logging.getLogger("krakenflow.ingest")

#: ``on_frame(text, recv_ns, connection_id, seq, key)``: key is the pair, or None for connection frames.
FrameSink = Callable[[str, int, str, int, "str | None"], Awaitable[None]]

#: frames the socket buffers while the sink is slow; beyond it websockets stops reading (TCP
#: backpressure towards Kraken) instead of growing without bound
MAX_QUEUE = 4096
#: data must flow this long before the reconnect backoff starts from its shortest delay again
STABLE_AFTER = 30.0
#: the close code this side uses for a connection whose pong did not come (4000-4999: private use)
NO_PONG = 4000

#: what Kraken's close codes mean, and how soon to come back: ``soon`` (the server restarts; no fault
#: of ours), ``policy`` (Kraken objects to this client: wait ``policy_wait`` at least), ``backoff``
CLOSE_CODES: dict[int, tuple[str, str]] = {
    1000: ("normal closure", "backoff"),
    1001: ("going away: the server restarts", "soon"),
    1006: ("dropped without a close frame", "backoff"),
    1008: ("policy violation: too many connections or requests from this IP", "policy"),
    1011: ("server error", "backoff"),
    1012: ("service restart", "soon"),
    1013: ("try again later: the server is overloaded", "policy"),
}


class SinkUnavailable(Exception):
    """The sink cannot take frames (Kafka down or too slow): the connection is dropped, and the
    reconnect, once the sink takes frames again, resubscribes with fresh snapshots."""


class KrakenConnection:
    """A connection for one set of pairs; :meth:`run` until cancelled."""

    def __init__(
        self, urls: str | tuple[str, ...], pairs: tuple[str, ...], depth: int, channels: tuple[str, ...],
        sink: FrameSink, connection_id: str, *, stale_after: float = 15.0, resync_min_interval: float = 5.0,
        backoff: Backoff | None = None, with_instrument: bool = True, ping_interval: float = 30.0,
        ping_timeout: float = 10.0, limiter: ConnectLimiter | None = None, policy_wait: float = 60.0,
        ready: Callable[[], Awaitable[None]] | None = None, on_connect: Callable[[], None] | None = None,
    ) -> None:
        self.urls = (urls,) if isinstance(urls, str) else urls
        self.pairs, self.depth, self.channels = pairs, depth, channels
        self.sink = sink
        self.connection_id = connection_id
        self.stale_after = stale_after
        self.resync_min_interval = resync_min_interval
        self.backoff = backoff or Backoff()
        self.with_instrument = with_instrument
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.limiter = limiter or ConnectLimiter()
        self.policy_wait = policy_wait
        self.ready = ready
        self.on_connect = on_connect
        self.ws: ClientConnection | None = None
        self.connected = asyncio.Event()
        self.seq = 0
        self.reconnects: dict[str, int] = {}
        self.closes: dict[int, int] = {}  # close codes Kraken sent
        self.last_book: dict[str, float] = {}
        self.last_resync: dict[str, float] = {}
        self.resyncs = 0
        self._deferred: dict[str, asyncio.Task[None]] = {}  # resyncs asked for within the interval
        self._req_id = 100
        self._connected_at = 0.0
        self._url_index = 0
        self._pong = asyncio.Event()
        self._no_pong = False  # this side closed the connection: its pong did not come

    @property
    def url(self) -> str:
        return self.urls[self._url_index]

    async def run(self) -> None:
        while True:
            if self.ready is not None:
                await self.ready()
            await self._within_connect_limit()
            reason, code = await self._session()
            self.connected.clear()
            self.reconnects[reason] = self.reconnects.get(reason, 0) + 1
            if code is not None:
                self.closes[code] = self.closes.get(code, 0) + 1
            delay = self._delay_after(reason, code)
            await asyncio.sleep(delay)  # backoff between reconnects: Kraken bans fast reconnect loops

    def _delay_after(self, reason: str, code: int | None) -> float:
        """The wait before reconnecting, by what ended the connection; the next URL after a failure."""
        meaning, kind = CLOSE_CODES.get(code, ("", "backoff")) if code is not None else ("", "backoff")
        if kind == "policy":
            delay = max(self.policy_wait, self.backoff.next_delay())
            log.error("Kraken closed connection %s with %d (%s); reconnecting in %.0f s. If this repeats, use "
                      "fewer connections (raise KRAKENFLOW_PAIRS_PER_CONNECTION) or lower KRAKENFLOW_CONNECT_LIMIT",
                      self.connection_id, code, meaning, delay)
            return delay
        if kind == "soon":  # the server went away or restarts: nothing is wrong with us
            self.backoff.reset()
        elif len(self.urls) > 1:
            self._url_index = (self._url_index + 1) % len(self.urls)
        delay = self.backoff.next_delay()
        log.warning("kraken connection %s lost (%s%s); reconnecting to %s in %.1f s%s", self.connection_id, reason,
                    f": {meaning}" if meaning else "", self.url, delay,
                    ", once Kafka answers" if reason.startswith("kafka unavailable") else "")
        return delay

    async def _within_connect_limit(self) -> None:
        """Wait while the ingest's connects in the last window reach the limit (shared by every
        connection: Kraken counts connects per IP)."""
        now = time.monotonic()
        wait = self.limiter.wait(now)
        if wait > 0:
            self.limiter.delayed += 1
            log.warning("connect limit reached (%d per %.0f s, KRAKENFLOW_CONNECT_LIMIT): connection %s waits "
                        "%.1f s", self.limiter.limit, self.limiter.window, self.connection_id, wait)
            while (wait := self.limiter.wait(time.monotonic())) > 0:
                await asyncio.sleep(wait)  # until the oldest connect leaves the window
        self.limiter.record(time.monotonic())
        if self.on_connect is not None:
            self.on_connect()

    async def _session(self) -> tuple[str, int | None]:
        """One connection, until it ends: (why, Kraken's close code if it sent one)."""
        try:
            async with connect(self.url, max_size=2**24, compression=None, open_timeout=10,
                               ping_interval=20, ping_timeout=20, max_queue=MAX_QUEUE) as ws:
                self.ws, self._no_pong = ws, False
                await self._subscribe_all(ws)
                self._connected_at = time.monotonic()
                self.connected.set()
                watchdogs = [asyncio.create_task(self._watch_staleness()), asyncio.create_task(self._keepalive(ws))]
                try:
                    async for message in ws:
                        text = message if isinstance(message, str) else message.decode()
                        await self._on_message(text)
                finally:
                    for task in watchdogs:
                        task.cancel()
                if self._no_pong:
                    return "no pong", None
                return f"closed {ws.close_code}", ws.close_code
        except SinkUnavailable as exc:
            return f"kafka unavailable ({exc})", None
        except ConnectionClosed as exc:
            if self._no_pong:
                return "no pong", None
            code = exc.rcvd.code if exc.rcvd else 1006
            return f"closed {code}", code
        except (TimeoutError, OSError, InvalidHandshake) as exc:
            return type(exc).__name__, None
        except InvalidURI as exc:
            raise SystemExit(f"KRAKENFLOW_KRAKEN_URL is not a WebSocket URL: {exc}") from exc
        finally:
            self.ws = None
            for task in self._deferred.values():  # the reconnect resubscribes every pair anyway
                task.cancel()
            self._deferred.clear()

    async def _keepalive(self, ws: ClientConnection) -> None:
        """Kraken's application-level ping: a connection whose pong does not come within the timeout
        is closed (a WebSocket-level ping can be answered by a proxy while Kraken serves nothing)."""
        while True:
            await asyncio.sleep(self.ping_interval)  # the ping schedule
            self._pong.clear()
            await ws.send(orjson.dumps({"method": "ping", "req_id": self._next_id()}).decode())
            try:
                await asyncio.wait_for(self._pong.wait(), self.ping_timeout)
            except TimeoutError:
                log.warning("kraken connection %s: no pong within %.0f s; reconnecting", self.connection_id,
                            self.ping_timeout)
                self._no_pong = True
                await ws.close(NO_PONG, "no pong")
                return

    async def _on_message(self, text: str) -> None:
        recv_ns = time.time_ns()
        if text.startswith('{"method":"pong"'):
            self._pong.set()
        key = frame_key(text)
        if key is not None and text.startswith('{"channel":"book"'):
            now = self.last_book[key] = time.monotonic()
            if now - self._connected_at > STABLE_AFTER:
                self.backoff.reset()  # data flows steadily: the next drop starts from a short delay again
        seq = self.seq
        self.seq += 1
        await self.sink(text, recv_ns, self.connection_id, seq, key)

    def _next_id(self) -> int:
        self._req_id += 1
        return self._req_id

    def _request(self, method: str, channel: str, symbols: list[str] | None) -> str:
        return request(method, channel, symbols, self.depth, self._next_id()).decode()

    async def _subscribe_all(self, ws: ClientConnection) -> None:
        if self.with_instrument:
            await ws.send(self._request("subscribe", "instrument", None))
        now = time.monotonic()
        for pair in self.pairs:
            self.last_book[pair] = now  # staleness counts from the subscription
        for channel in self.channels:
            await ws.send(self._request("subscribe", channel, list(self.pairs)))

    async def resync(self, pair: str, reason: str) -> bool:
        """Unsubscribe and resubscribe one pair's book, at most once per ``resync_min_interval``.

        One asked for sooner is deferred to the end of the interval, not dropped: the frame that
        caused it (one Kafka lost, say) may be later than the snapshot of the last resync."""
        ws = self.ws
        now = time.monotonic()
        if ws is None or pair not in self.pairs or "book" not in self.channels:
            return False
        wait = self.resync_min_interval - (now - self.last_resync.get(pair, -1e9))
        if wait > 0:
            if pair not in self._deferred:
                self._deferred[pair] = asyncio.get_running_loop().create_task(self._resync_later(pair, reason, wait))
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

    async def _resync_later(self, pair: str, reason: str, wait: float) -> None:
        await asyncio.sleep(wait)  # the end of the pair's resync interval
        del self._deferred[pair]
        await self.resync(pair, reason)

    def stale_pairs(self, now: float | None = None) -> list[str]:
        if "book" not in self.channels:
            return []  # no book subscribed: nothing can be stale (and a resync would subscribe one)
        now = time.monotonic() if now is None else now
        return [p for p in self.pairs if now - self.last_book.get(p, now) > self.stale_after]

    async def _watch_staleness(self) -> None:
        while True:
            slept = time.monotonic()
            await asyncio.sleep(1.0)  # staleness is judged in whole seconds
            stood_still = time.monotonic() - slept - 1.0
            if stood_still > 1.0:  # this process stood still (a pause): the silence was ours, not Kraken's
                for pair in self.last_book:
                    self.last_book[pair] += stood_still
                continue
            for pair in self.stale_pairs():
                await self.resync(pair, f"no book data for {self.stale_after:.0f} s")

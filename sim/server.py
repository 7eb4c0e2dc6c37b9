"""The simulator's WebSocket server: Kraken v2 public market data on loopback.

Behaves like ``wss://ws.kraken.com/v2``: a ``status`` frame on connect, one ack per symbol, snapshots
then updates, 1 Hz heartbeats while subscribed, ``ping``/``pong``, and Kraken's error acks. Fault
controls (see :mod:`sim.faults`) are methods of :class:`Simulator` and an HTTP control API on the same
port (``GET /control/<action>?...``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from sim import render
from sim.control import handle_control
from sim.exchange import PairEvent, PairMarket
from sim.faults import Faults
from sim.pairs import PairSpec, catalogue
from sim.replay import Replay
from sim.requests import handle_request
from sim.stats import OHLC_INTERVALS, PairStats

log = logging.getLogger("krakenflow.sim")
QUEUE_LIMIT = 20_000


@dataclass(slots=True)
class SimSettings:
    """How the simulated market behaves.

    ``rate`` is events per second across all subscribed pairs, shared by activity weight; ``pair_rate``
    instead gives every subscribed pair the same rate. ``0`` for either means as fast as the machine
    allows (the load-generator mode). ``replay`` serves a capture file instead of the synthetic market.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    pairs: int = 60
    seed: int = 1
    rate: float = 50.0
    pair_rate: float | None = None
    heartbeat_interval: float = 1.0
    replay: Path | None = None
    speed: float = 1.0


@dataclass(slots=True, eq=False)  # identity semantics: clients live in a set
class Client:
    """One connection and what it subscribed to."""

    ws: ServerConnection
    connection_id: int
    queue: asyncio.Queue[tuple[float, str]] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    book: dict[str, int] = field(default_factory=dict)  # symbol -> depth
    trade: set[str] = field(default_factory=set)
    ticker: set[str] = field(default_factory=set)
    ohlc: dict[str, set[int]] = field(default_factory=dict)  # symbol -> intervals
    instrument: bool = False
    frames_sent: int = 0

    def subscribed(self) -> bool:
        return bool(self.book or self.trade or self.ticker or self.ohlc or self.instrument)

    def symbols(self) -> set[str]:
        return set(self.book) | self.trade | self.ticker | set(self.ohlc)


class Simulator:
    """A running simulated exchange. Use as ``async with Simulator(settings) as sim: sim.url``."""

    def __init__(self, settings: SimSettings | None = None) -> None:
        self.settings = settings or SimSettings()
        self.specs: dict[str, PairSpec] = {s.symbol: s for s in catalogue(self.settings.pairs)}
        self.markets: dict[str, PairMarket] = {}
        self.stats: dict[str, PairStats] = {}
        self.clients: set[Client] = set()
        self.faults = Faults()
        self.events = 0
        self.connects: list[float] = []  # wall-clock time of every connection accepted
        self.book_overlap: dict[str, int] = {}  # most connections subscribed to a pair's book at once
        self.paused = False
        self._rng = random.Random(self.settings.seed)
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.replay = Replay(self.settings.replay, self.settings.speed) if self.settings.replay else None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> Simulator:
        s = self.settings
        self._server = await serve(self._handle, s.host, s.port, process_request=self._http,
                                   max_size=2**20, ping_interval=None, compression=None)
        self._tasks.append(asyncio.create_task(self._run_market(), name="sim-market"))
        self._tasks.append(asyncio.create_task(self.faults.run_drops(self.drop_connections), name="sim-drops"))
        return self

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "simulator not started"
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://{self.settings.host}:{self.port}/v2"

    def market(self, symbol: str) -> PairMarket:
        market = self.markets.get(symbol)
        if market is None:
            spec = self.specs[symbol]
            market = self.markets[symbol] = PairMarket(spec, self.settings.seed)
            self.stats[symbol] = PairStats(spec.price_precision, spec.qty_precision, spec.price)
        return market

    # -- fault controls ----------------------------------------------------------------------------

    def drop_connections(self) -> int:
        """Abort every connection now (the client sees close code 1006, as with a Cloudflare drop)."""
        for client in list(self.clients):
            client.ws.transport.abort()
        return len(self.clients)

    def close_connections(self, code: int, reason: str) -> int:
        """Close every connection with ``code`` (a close frame, as Kraken sends one)."""
        for client in list(self.clients):
            asyncio.get_running_loop().create_task(client.ws.close(code, reason))
        return len(self.clients)

    def announce(self, system: str) -> int:
        """A ``status`` update with ``system`` to every connection (and on connect from now on)."""
        self.faults.system = system
        for client in self.clients:
            self.enqueue(client, render.status(client.connection_id, system))
        return len(self.clients)

    def burst(self, symbol: str, events: int) -> None:
        """Generate ``events`` events of ``symbol`` at once."""
        for _ in range(events):
            self._event(symbol)

    def state(self) -> dict[str, Any]:
        return {
            "connections": len(self.clients), "events": self.events, "connects": self.connects,
            "book_overlap": self.book_overlap,
            "frames_sent": sum(c.frames_sent for c in self.clients),
            "subscriptions": {str(c.connection_id): sorted(c.symbols()) for c in self.clients},
            "faults": self.faults.describe(), "paused": self.paused,
            "replay_origins": {str(c): list(o) for c, o in self.replay.origins.items()} if self.replay else {},
        }

    # -- connections -------------------------------------------------------------------------------

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/control/"):
            status, body = handle_control(self, request.path)
            response = connection.respond(status, orjson.dumps(body).decode() + "\n")
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
            return response
        if request.path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        client = Client(ws, self._rng.getrandbits(64))
        self.clients.add(client)
        self.connects.append(time.time())
        writer = asyncio.create_task(self._writer(client))
        heartbeat = asyncio.create_task(self._heartbeats(client))
        try:
            if self.replay is None:  # a capture carries its own status frame
                self.enqueue(client, render.status(client.connection_id, self.faults.system))
            async for message in ws:
                await self._request(client, message)
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(client)
            writer.cancel()
            heartbeat.cancel()

    async def _writer(self, client: Client) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                enqueued, frame = await client.queue.get()
                delay = self.faults.delay - (time.monotonic() - enqueued)
                if delay > 0:
                    await asyncio.sleep(delay)  # injected latency, as the delay fault asks
                await client.ws.send(frame)
                client.frames_sent += 1

    async def _heartbeats(self, client: Client) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            if client.subscribed():
                self.enqueue(client, render.HEARTBEAT)

    def enqueue(self, client: Client, frame: str) -> None:
        try:
            client.queue.put_nowait((time.monotonic(), frame))
        except asyncio.QueueFull:
            # a client this far behind is cut off, as an exchange does with slow consumers
            log.warning("connection %s is %d frames behind; closing it", client.connection_id, QUEUE_LIMIT)
            client.ws.transport.abort()

    async def _request(self, client: Client, message: str | bytes) -> None:
        await handle_request(self, client, message, time.time_ns())

    # -- market ------------------------------------------------------------------------------------

    def subscribed_symbols(self) -> list[str]:
        symbols: set[str] = set()
        for client in self.clients:
            symbols |= client.symbols()
        return sorted(symbols)

    def wake(self) -> None:
        self._wake.set()

    async def _run_market(self) -> None:
        if self.replay is not None:
            return
        s = self.settings
        owed: dict[str, float] = {}
        last = time.monotonic()
        while True:
            symbols = [] if self.paused else self.subscribed_symbols()
            if not symbols:
                self._wake.clear()
                await self._wake.wait()
                last = time.monotonic()
                continue
            now = time.monotonic()
            elapsed, last = now - last, now
            max_rate = (s.pair_rate == 0) if s.pair_rate is not None else (s.rate == 0)
            if max_rate:
                for _ in range(20):
                    for symbol in symbols:
                        self._event(symbol)
                await self._backpressure()
                continue
            weights = {sym: self.specs[sym].activity for sym in symbols}
            total = sum(weights.values())
            for symbol in symbols:
                rate = s.pair_rate if s.pair_rate is not None else s.rate * weights[symbol] / total
                due = owed.get(symbol, 0.0) + rate * elapsed
                n = int(due)
                owed[symbol] = due - n
                for _ in range(n):
                    self._event(symbol)
            await asyncio.sleep(0.005)  # pacing tick of the configured rate

    async def _backpressure(self) -> None:
        """In max-rate mode, let writers drain before generating more."""
        while any(c.queue.qsize() > QUEUE_LIMIT // 2 for c in self.clients):
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)

    def _event(self, symbol: str) -> None:
        """One exchange event of ``symbol``, fanned out to its subscribers."""
        subscribers = [c for c in self.clients if symbol in c.book or symbol in c.trade
                       or symbol in c.ticker or symbol in c.ohlc]
        market = self.market(symbol)
        depths = {c.book[symbol] for c in subscribers if symbol in c.book}
        now = time.time_ns()
        event = market.step(depths, now)
        self.events += 1
        stats = self.stats[symbol]
        # like the exchange, candles of every interval are kept whether or not anyone subscribed
        stats.on_trades(event.trades, now, OHLC_INTERVALS)
        if self.faults.is_silent(symbol):
            return
        # spent only on an event that gives some subscriber a book frame (one that changes only levels
        # beyond every subscribed depth, or only trades, carries no checksum to corrupt)
        corrupt = self.faults.corrupts(symbol)
        if self._fan_out(symbol, event, subscribers, corrupt) and corrupt:
            self.faults.take_corruption(symbol)

    def _fan_out(self, symbol: str, event: PairEvent, subscribers: list[Client], corrupt: bool) -> bool:
        """Send the event's frames; True when some subscriber got a book frame."""
        frames: dict[Any, str] = {}
        checksum = event.checksum ^ 0x5A5A5A5A if corrupt else event.checksum
        for client in subscribers:
            depth = client.book.get(symbol)
            if depth is not None:
                bids, asks = event.views[depth]
                if bids or asks:
                    frame = frames.get(depth)
                    if frame is None:
                        frame = frames[depth] = render.book(symbol, False, bids, asks, checksum, event.ts_ns)
                    self.enqueue(client, frame)
            if event.trades and symbol in client.trade:
                frame = frames.get("trade") or frames.setdefault(
                    "trade", render.trades(symbol, False, event.trades, event.ts_ns))
                self.enqueue(client, frame)
            if event.trades and symbol in client.ticker:
                frame = frames.get("ticker") or frames.setdefault("ticker", render.ticker(
                    symbol, False, self.stats[symbol].ticker(*self.markets[symbol].best()), event.ts_ns))
                self.enqueue(client, frame)
            if event.trades:
                for interval in client.ohlc.get(symbol, ()):
                    frame = frames.get(("ohlc", interval)) or frames.setdefault(("ohlc", interval), render.ohlc(
                        symbol, False, [self.stats[symbol].candle(interval, event.ts_ns)], event.ts_ns))
                    self.enqueue(client, frame)
        return any(isinstance(kind, int) for kind in frames)  # book frames are keyed by their depth


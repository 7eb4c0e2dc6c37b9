"""The asyncio book client: ``kraken.book.deltas`` from Kafka in, verified local books out.

::

    async with BookClient("localhost:9092", ["BTC-USD", "ETH-USD"], books_url="http://localhost:6066") as client:
        async for update in client:
            book = update.book
            print(update.symbol, book.best_bid, book.best_ask, book.spread, book.checksum_ok)

It reads every partition of the topic ``read_committed`` (exactly-once output on Apache Kafka; a
transaction that aborted is never seen), or ``read_uncommitted`` for the lowest latency (a redo of an
aborted transaction is dropped as a repeat, see :class:`BookClient`), with no consumer group, so any number of clients may run. A
client that joins mid-stream, finds a gap in ``(epoch, seq)`` or a checksum mismatch, asks the
worker's web view (``GET {books_url}/books/{symbol}/``, routed to the pair's owner) for the book at full
depth and applies the deltas received meanwhile on top; without ``books_url`` it waits for the pair's
next exchange snapshot. Sequencing rules: :mod:`krakenflow.client.tracker`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from krakenflow.client.book import LocalBook
from krakenflow.client.tracker import BookTracker, BookUpdate, SymbolStats

log = logging.getLogger("krakenflow.client")

Callback = Callable[[BookUpdate], Any]
RECOVERY_DEPTH = 1000  # more than any subscribed depth: the view answers the whole book


class ClientError(Exception):
    """The client cannot run as configured; the message names the fix."""


class RecoveryError(ClientError):
    """The web view could not give a book (unreachable, unknown symbol, owner down)."""


class BookClient:
    """Verified local books of ``symbols`` (``BTC-USD``) from ``topic`` on ``bootstrap``.

    ``start``: ``latest`` (join now; books come from the web view or the next snapshot) or
    ``earliest`` (replay the topic). ``consumer_config``: extra aiokafka settings (TLS, SASL).

    ``isolation_level``: ``read_committed`` (the default) sees a delta once its transaction commits.
    ``read_uncommitted`` (the low-latency path) sees it as soon as the worker sends it, a commit cycle
    earlier. A transaction that aborts (a worker killed or fenced mid-commit) is redone by the pair's
    next owner from the same input and state, so the redo carries the same ``(symbol, epoch, seq)`` with
    the same levels and checksum; the tracker drops it as a repeat. Every delta is seen once either
    way (only ``ts_emit_ns`` of a redo differs; the 20-kill test checks both readers agree).
    """

    def __init__(self, bootstrap: str, symbols: list[str], *, topic: str = "kraken.book.deltas",
                 books_url: str | None = None, start: str = "latest", isolation_level: str = "read_committed",
                 consumer_config: Mapping[str, Any] | None = None, queue_size: int = 10_000) -> None:
        if start not in ("latest", "earliest"):
            raise ValueError(f"start must be 'latest' or 'earliest', not {start!r}")
        self.bootstrap, self.topic, self.start_at = bootstrap, topic, start
        self.books_url = books_url.rstrip("/") if books_url else None
        self.tracker = BookTracker(list(symbols))
        self._config = {"isolation_level": isolation_level, **(consumer_config or {})}
        self._consumer: AIOKafkaConsumer | None = None
        self._session: aiohttp.ClientSession | None = None
        self._callbacks: list[Callback] = []
        self._queue: asyncio.Queue[BookUpdate] = asyncio.Queue(queue_size)
        self._tasks: list[asyncio.Task[None]] = []
        self._recovering: dict[str, asyncio.Task[None]] = {}
        self.recovery_errors = 0
        self.fetch_errors = 0
        self.bad_records = 0

    # -- what a user reads ---------------------------------------------------------------------

    def book(self, symbol: str) -> LocalBook:
        return self.tracker.book(symbol)

    def state(self, symbol: str) -> str:
        """``waiting``, ``recovering``, ``live`` or ``invalid``."""
        return self.tracker.state(symbol)

    def stats(self, symbol: str) -> SymbolStats:
        return self.tracker.stats(symbol)

    def on_update(self, callback: Callback) -> Callback:
        """Call ``callback(update)`` for every update (a plain function or a coroutine function)."""
        self._callbacks.append(callback)
        return callback

    def __aiter__(self) -> AsyncIterator[BookUpdate]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[BookUpdate]:
        while True:
            yield await self._queue.get()

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> BookClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    group_id=None, **self._config)
        await consumer.start()
        # a group-less consumer holds no metadata of a topic it was not told about (aiokafka has no public
        # call for it; this is what subscribe() does inside)
        consumer._client.add_topic(self.topic)
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(self.topic)
        if not partitions:
            await consumer.stop()
            raise ClientError(f"topic {self.topic} does not exist on {self.bootstrap}: is a worker running, "
                                "and is KRAKENFLOW_TOPIC_PREFIX the same?")
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if self.start_at == "earliest":
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        self._consumer = consumer
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._tasks = [asyncio.get_running_loop().create_task(self._consume(), name="krakenflow-client")]
        self._schedule_recoveries()

    async def stop(self) -> None:
        for task in [*self._tasks, *self._recovering.values()]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._recovering.values(), return_exceptions=True)
        self._tasks, self._recovering = [], {}
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the loop ------------------------------------------------------------------------------

    async def _consume(self) -> None:
        assert self._consumer is not None
        delay = 0.2
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            except KafkaError as exc:  # the broker away: keep trying, books stay as they are meanwhile
                self.fetch_errors += 1
                log.warning("reading %s failed (%s); retrying in %.1f s", self.topic, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            for messages in batches.values():
                for message in messages:
                    try:
                        record = orjson.loads(message.value)
                        await self._receive(record)
                    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                        # not a delta record: counted and skipped, never the end of the client
                        self.bad_records += 1
                        log.warning("%s %d/%d is not a book delta record (%s: %s); skipped", self.topic,
                                    message.partition, message.offset, type(exc).__name__, exc)
            self._schedule_recoveries()

    async def _receive(self, record: Mapping[str, Any]) -> None:
        """One delta record (a subclass may filter or observe here)."""
        for update in self.tracker.feed(record):
            await self._publish(update)

    async def _publish(self, update: BookUpdate) -> None:
        for callback in self._callbacks:
            result = callback(update)
            if asyncio.iscoroutine(result):
                await result
        if self._queue.full():  # nobody iterates: keep the newest
            self._queue.get_nowait()
        self._queue.put_nowait(update)

    # -- recovery ------------------------------------------------------------------------------

    def _schedule_recoveries(self) -> None:
        if self.books_url is None:
            return  # the next exchange snapshot restores the book
        loop = asyncio.get_running_loop()
        for symbol in list(self.tracker.needs_recovery):
            if symbol not in self._recovering:
                self._recovering[symbol] = loop.create_task(self._recover(symbol), name=f"recover-{symbol}")

    async def _recover(self, symbol: str) -> None:
        delay = 0.2
        try:
            while symbol in self.tracker.needs_recovery:
                try:
                    view = await self.fetch_book(symbol)
                except RecoveryError as exc:
                    self.recovery_errors += 1
                    log.warning("recovering %s: %s; retrying in %.1f s", symbol, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                for update in self.tracker.restore(symbol, view):
                    await self._publish(update)
                if symbol in self.tracker.needs_recovery:  # the view was behind what was kept: ask again
                    await asyncio.sleep(delay)
        finally:
            self._recovering.pop(symbol, None)

    async def fetch_book(self, symbol: str) -> dict[str, Any]:
        """The worker's book of ``symbol`` at full depth (its web view, routed to the owner)."""
        assert self._session is not None and self.books_url is not None
        url = f"{self.books_url}/books/{symbol}/?depth={RECOVERY_DEPTH}"
        try:
            async with self._session.get(url) as response:
                body = await response.read()
                if response.status != 200:
                    raise RecoveryError(f"GET {url} answered {response.status}: {body[:200]!r}")
                view: dict[str, Any] = orjson.loads(body)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RecoveryError(f"GET {url} failed ({type(exc).__name__}: {exc}); is a worker's web port there?") \
                from exc
        if view.get("state") != "live":
            raise RecoveryError(f"the worker's book of {symbol} is {view.get('state')}, not live")
        return view

"""The thin ingest: Kraken frames -> ``kraken.raw``, verbatim, keyed by pair.

* Exactly one live ingest per cluster: every candidate (each worker, or ``krakenflow ingest``
  processes) joins the consumer group ``<app_id>-ingest`` on the one-partition topic
  ``kraken.ingest.lock``; the member assigned that partition is the live ingest. When it stops or dies
  the group rebalances and another candidate takes over (after the session timeout for a SIGKILL).
* Records: key = pair (``BTC/USD``) for pair frames, ``conn:<id>`` for connection frames; headers
  ``recv_ns``, ``conn_id``, ``seq`` (per connection). acks=all; one partition per pair keeps order.
* Pairs are spread over connections of at most ``pairs_per_connection`` pairs.
* Resync requests from book agents arrive on ``kraken.control``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from app.kraken_client import KrakenConnection
from app.settings import Settings
from app.topics import ensure_topics
from models.histogram import LatencyHistogram

log = logging.getLogger("krakenflow.ingest")


class IngestStats:
    """Counters the metrics module exports (kept here so the ingest has no metrics dependency)."""

    def __init__(self) -> None:
        self.frames: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self.dropped = 0
        self.sent = 0
        self.in_flight = 0
        self.send_latency = LatencyHistogram()


def raw_record(text: str, recv_ns: int, connection_id: str, seq: int,
               key: str | None) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """``kraken.raw`` record for one frame: (key, value, headers); shared by the ingest and replay."""
    headers = [("recv_ns", str(recv_ns).encode()), ("conn_id", connection_id.encode()), ("seq", str(seq).encode())]
    return (key if key is not None else f"conn:{connection_id}").encode(), text.encode(), headers


def channel_of(text: str) -> str:
    if text.startswith('{"channel":"'):
        end = text.find('"', 12)
        return text[12:end]
    return "response"


class Ingest:
    """Holds the Kraken connections and the producer while this process is the live ingest."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = IngestStats()
        self.connections: list[KrakenConnection] = []
        self.active = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._instance = f"{socket.gethostname()}:{os.getpid()}"

    # -- election ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Campaign for the ingest role forever; run the connections while holding it."""
        s = self.settings
        await ensure_topics(s)
        lock = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap, group_id=f"{s.app_id}-ingest", enable_auto_commit=False,
            session_timeout_ms=6000, heartbeat_interval_ms=1000, client_id=f"ingest-{self._instance}",
        )
        listener = _Election(self)
        await lock.start()
        try:
            lock.subscribe([s.topic("ingest.lock")], listener=listener)
            while True:
                await lock.getmany(timeout_ms=1000)  # keeps group membership; the lock has no data
        finally:
            await self.stop_streaming()
            await lock.stop()

    async def start_streaming(self) -> None:
        if self.active.is_set():
            return
        s = self.settings
        log.info("this process is the live ingest: %d pairs from %s", len(s.pairs), s.kraken_url)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap, acks="all", linger_ms=5,
            # the embedded broker rejects InitProducerId, so idempotence only on Apache Kafka
            enable_idempotence=not s.embedded_broker,
            max_batch_size=1 if s.embedded_broker else 16384, client_id=f"ingest-{self._instance}",
        )
        await self._producer.start()
        chunk = max(1, s.pairs_per_connection)
        groups = [s.pairs[i:i + chunk] for i in range(0, len(s.pairs), chunk)]
        self.connections = [
            KrakenConnection(
                s.kraken_url, pairs, s.depth, s.channels, self._publish, f"{self._instance}:{n}",
                stale_after=s.stale_after, resync_min_interval=s.resync_min_interval, with_instrument=(n == 0),
            )
            for n, pairs in enumerate(groups)
        ]
        self._tasks = [asyncio.create_task(c.run(), name=f"kraken-{n}") for n, c in enumerate(self.connections)]
        self._tasks.append(asyncio.create_task(self._control_loop(), name="ingest-control"))
        self.active.set()

    async def stop_streaming(self) -> None:
        if not self.active.is_set():
            return
        self.active.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._producer is not None:
            await self._producer.stop()  # flushes what is buffered
            self._producer = None
        log.info("ingest role released")

    # -- frames ------------------------------------------------------------------------------------

    async def _publish(self, text: str, recv_ns: int, connection_id: str, seq: int, key: str | None) -> None:
        producer = self._producer
        if producer is None:
            self.stats.dropped += 1
            return
        record_key, data, headers = raw_record(text, recv_ns, connection_id, seq, key)
        channel = channel_of(text)
        stats = self.stats
        stats.frames[channel] = stats.frames.get(channel, 0) + 1
        stats.bytes[channel] = stats.bytes.get(channel, 0) + len(data)
        sent_ns = time.monotonic_ns()
        future = await producer.send(self.settings.raw_topic, data, key=record_key, headers=headers)
        stats.in_flight += 1
        future.add_done_callback(lambda f: self._delivered(f, sent_ns))

    def _delivered(self, future: "asyncio.Future[Any]", sent_ns: int) -> None:
        stats = self.stats
        stats.in_flight -= 1
        if future.cancelled() or future.exception() is not None:
            stats.dropped += 1
            log.error("frame lost: %s", future.exception() if not future.cancelled() else "cancelled")
        else:
            stats.sent += 1
            stats.send_latency.observe_ns(time.monotonic_ns() - sent_ns)

    async def resync(self, pair: str, reason: str) -> bool:
        for connection in self.connections:
            if pair in connection.pairs:
                return await connection.resync(pair, reason)
        return False

    async def _control_loop(self) -> None:
        """Resync requests from book agents: ``{"action":"resync","symbol":"BTC/USD","reason":...}``."""
        s = self.settings
        consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False,
                                    client_id=f"ingest-control-{self._instance}")
        await consumer.start()
        try:
            topic = s.topic("control")
            partitions = consumer.partitions_for_topic(topic) or {0}
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)  # only requests made while this process is the ingest
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        await self._on_control(record.value)
        finally:
            await consumer.stop()

    async def _on_control(self, value: bytes | None) -> None:
        try:
            request = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            log.warning("ignoring a control message that is not JSON: %r", (value or b"")[:100])
            return
        if isinstance(request, dict) and request.get("action") == "resync" and isinstance(request.get("symbol"), str):
            await self.resync(request["symbol"], str(request.get("reason", "requested")))


class _Election(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    # Revocation happens on every rebalance, also when the holder keeps the lock: acting only on the
    # new assignment avoids reconnecting to Kraken each time a worker joins.
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if assigned:
            await self.ingest.start_streaming()
        else:
            await self.ingest.stop_streaming()

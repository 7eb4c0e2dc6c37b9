"""Glue between Faust events, the pure :class:`~models.processor.BookProcessor`, the store and Kafka."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka.errors import KafkaError

from agents.catchup import read_range
from app.kafka_out import BatchWriter
from app.kraken_client import Backoff
from app.settings import Settings
from models.marketdata import WhaleThresholds
from models.processor import BookProcessor, Output, ProcessorSettings, RawRecord
from tables.books import BookStore

log = logging.getLogger("krakenflow.agents")


def header(headers: Any, name: str) -> bytes | None:
    """A header value from Faust's message headers (a list of pairs or a mapping)."""
    if not headers:
        return None
    if isinstance(headers, dict):
        value = headers.get(name)
        return value if isinstance(value, bytes) else None
    for key, value in headers:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


class BookPipeline:
    def __init__(self, app: Any, settings: Settings, table: Any,
                 precision_of: Callable[[str], tuple[int, int] | None],
                 remember_precision: Callable[[str, tuple[int, int]], None]) -> None:
        self.app = app
        self.settings = settings
        self.writer = BatchWriter(settings.kafka_bootstrap, f"{settings.app_id}-books")
        self.store = BookStore(table, self.writer, lambda: table.changelog_topic.get_topic_name())
        self._partition = -1
        self.processor = BookProcessor(
            ProcessorSettings(settings.snapshot_interval_ms, settings.snapshot_levels, settings.stale_after,
                              settings.resync_min_interval,
                              WhaleThresholds.parse(settings.whale_notional, settings.whale_thresholds)),
            precision_of=precision_of,
            restore=lambda symbol: self.store.restore(symbol, self._partition),
        )
        self.remember_precision = remember_precision
        self._published: dict[str, tuple[int, int]] = {}
        self._started = False
        self._lock = asyncio.Lock()
        self.batches = 0
        self.events = 0
        self.delivery_retries = 0
        self.caught_up = 0
        self.rebalances = 0
        self.recovery_seconds = 0.0
        self._assigned_at: float | None = None
        self.processed_offsets: dict[int, int] = {}
        self._resumed: set[int] = set()  # partitions whose first event since assignment was seen

    async def _ensure_started(self) -> None:
        if not self._started:
            await self.writer.start()
            self._started = True

    async def handle(self, events: Sequence[Any]) -> None:
        async with self._lock:
            await self._ensure_started()
            out: list[Output] = []
            processed: dict[int, int] = {}
            for event in events:
                message = event.message
                if message.partition not in self._resumed:
                    await self._catch_up(message.partition, message.offset, out, processed)
                recv = header(message.headers, "recv_ns")
                self._process(RawRecord(event.value or b"", event.key, message.partition, message.offset,
                                        int(recv) if recv else None), out)
                processed[message.partition] = message.offset
            self.events += len(events)
            self.processed_offsets.update(processed)
            if self._assigned_at is not None:
                self.recovery_seconds = time.monotonic() - self._assigned_at
                self._assigned_at = None
            self._publish_precisions()
            await self._deliver(out)
            await self.store.flush([st for st in self.processor.pairs.values() if st.changed], processed)
            self.batches += 1

    def _process(self, record: RawRecord, out: list[Output]) -> None:
        self._partition = record.partition
        try:
            self.processor.process(record, out)
        except Exception as exc:  # a bug must cost one frame (dead-lettered), never the worker
            log.exception("frame at %s/%s could not be processed", record.partition, record.offset)
            self.processor.fail(record, f"internal error: {type(exc).__name__}: {exc}", out)

    async def _catch_up(self, partition: int, first: int, out: list[Output], processed: dict[int, int]) -> None:
        """First event of a partition since it was assigned: process any records the table lacks."""
        self._resumed.add(partition)
        done = self.store.processed_offset(partition)
        if done is None or first <= done + 1:
            return
        log.warning("raw partition %d resumes at offset %d but the books table holds offsets up to %d: "
                    "processing the %d records in between first", partition, first, done, first - done - 1)
        for record in await read_range(self.settings.kafka_bootstrap, self.settings.raw_topic, partition,
                                       done + 1, first):
            self._process(record, out)
            processed[partition] = record.offset
        self.caught_up += first - done - 1

    async def _deliver(self, out: list[Output]) -> None:
        """Produce outputs grouped by topic and wait until the broker has them all.

        Retries until delivered: giving up would let Faust ack the batch with its outputs lost.
        A retry may duplicate records; their ``raw_partition``/``raw_offset`` lineage identifies them.
        """
        if not out:
            return
        by_topic: dict[str, list[tuple[bytes, bytes, int | None]]] = {}
        for o in out:
            by_topic.setdefault(o.topic, []).append((o.key.encode(), o.value, o.timestamp_ms))
        backoff = Backoff(base=0.2, cap=10.0)
        while True:
            try:
                futures = []
                for suffix, records in by_topic.items():
                    futures.extend(await self.writer.send_keyed(self.settings.topic(suffix), records))
                await asyncio.gather(*futures)
                return
            except KafkaError as exc:
                self.delivery_retries += 1
                delay = backoff.next_delay()
                log.warning("output delivery failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    def _publish_precisions(self) -> None:
        for symbol, precision in self.processor.precisions.items():
            if self._published.get(symbol) != precision:
                self.remember_precision(symbol, precision)
                self._published[symbol] = precision

    async def tick(self) -> None:
        async with self._lock:
            if not self._started:
                return
            out: list[Output] = []
            self.processor.tick(out)
            await self._deliver(out)

    async def on_rebalance(self, assigned: bool) -> None:
        """Partitions moved: every pair is restored from the table when next seen.

        State kept from before could be stale (another worker may have owned a partition meanwhile),
        and the table holds exactly what was flushed, so dropping everything is the safe choice.
        """
        async with self._lock:
            self.processor.pairs.clear()
            self.store.pages.clear()
            self._resumed.clear()
            self.processed_offsets.clear()
            if assigned:
                self.rebalances += 1
                self._assigned_at = time.monotonic()

    def consumer_lag(self, app: Any) -> dict[int, int]:
        """Records of each assigned raw partition not yet processed (highwater - processed)."""
        lag: dict[int, int] = {}
        try:
            assignment = app.consumer.assignment()
        except Exception:  # not started yet
            return lag
        for tp in assignment:
            if tp.topic != self.settings.raw_topic:
                continue
            highwater = app.consumer.highwater(tp)
            if highwater is not None:
                lag[tp.partition] = max(0, highwater - self.processed_offsets.get(tp.partition, -1) - 1)
        return lag

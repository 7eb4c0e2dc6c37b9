"""Table recovery that ends on a changelog whose last offsets are transaction markers, or whose
records retention has removed.

Faust recovers a changelog partition until it has applied the record at ``end offset - 1``. A
partition written in Kafka transactions (the books changelog under exactly-once) ends with a commit
or abort marker there, a control record no consumer ever receives, so stock recovery waits for it
forever (with Faust's own transactions it gives up after two 5 s idle timeouts, and a consumer
position check that can end it early). Here the highwater of such a partition is the offset of its
last committed record, found by reading the partition's tail with a ``read_committed`` consumer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP

from app.kafka_internals import tolerate_cleaned_control_batches

log = logging.getLogger("krakenflow.recovery")

#: how long the tail search may take before Faust's own highwater is used
SEARCH_SECONDS = 20.0

#: for the short-lived consumers here, which read a bounded range and look offsets up: a fetch at the end
#: of a partition returns after 10 ms rather than aiokafka's 500 (the last fetch of a tail read is one,
#: as it reaches the final transaction marker), and a topic missing from a new client's metadata is asked
#: again after 10 ms rather than 100
QUICK = {"fetch_max_wait_ms": 10, "retry_backoff_ms": 10}


class MarkerAwareRecovery(Recovery):  # type: ignore[misc]
    async def _build_highwaters(self, consumer: Any, tps: Any, destination: Counter[TP], title: str) -> None:
        await super()._build_highwaters(consumer, tps, destination, title)
        # a partition whose records retention has all removed (a quiet candle table's changelog) has
        # nothing to recover: stock recovery would wait for its highwater record for ever
        earliest = await consumer.earliest_offsets(*tps) if tps else {}
        for tp, first in earliest.items():
            if first is not None and destination.get(tp, -1) >= 0 and first > destination[tp]:
                log.info("%s/%d: its records up to %d are gone (retention); nothing to recover", tp.topic,
                         tp.partition, destination[tp])
                destination[tp] = -1
        parts = getattr(self.app, "parts", None)
        if parts is None or not parts.settings.exactly_once:
            return
        from app.security import kafka_client_config  # the app's own room; imported late, no cycle

        topic = parts.tables.books.changelog_topic.get_topic_name()
        ends = {tp: destination[tp] for tp in tps if tp.topic == topic and destination.get(tp, -1) >= 0}
        if not ends:
            return
        last = await last_records(parts.settings.kafka_bootstrap, kafka_client_config(parts.settings), ends)
        for tp, offset in last.items():
            if offset != destination[tp]:
                log.info("%s/%d: last committed record at %d (offsets up to %d hold transaction markers)",
                         tp.topic, tp.partition, offset, destination[tp])
                destination[tp] = offset


async def last_records(bootstrap: str, config: Mapping[str, Any], ends: Mapping[TP, int]) -> dict[TP, int]:
    """For each partition, the offset of its last committed record at or below ``ends[tp]`` (-1: none)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **QUICK,
                                isolation_level="read_committed", client_id="krakenflow-recovery", **config)
    await consumer.start()
    found: dict[TP, int] = {}
    try:
        tps = {tp: TopicPartition(tp.topic, tp.partition) for tp in ends}
        # looked up while nothing is assigned: an assigned partition's fetch would hold the connection
        beginnings = await consumer.beginning_offsets(list(tps.values()))
        for tp, end in ends.items():
            found[tp] = await _last_record(consumer, tps[tp], beginnings[tps[tp]], end)
    finally:
        await consumer.stop()
    return found


async def _last_record(consumer: AIOKafkaConsumer, tp: TopicPartition, beginning: int, end: int) -> int:
    consumer.assign([tp])
    deadline = time.monotonic() + SEARCH_SECONDS
    window = 16  # a committed batch ends one marker before the end; an aborted one, a batch earlier
    while True:
        start = max(beginning, end + 1 - window)
        consumer.seek(tp, start)
        last = None
        while await consumer.position(tp) <= end:
            if time.monotonic() > deadline:
                log.warning("%s/%d: tail search timed out; recovering up to offset %d", tp.topic, tp.partition, end)
                return end
            for message in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                if message.offset <= end:
                    last = message.offset
        if last is not None:
            return last
        if start <= beginning:
            return beginning - 1
        window *= 16


#: seconds a new owner waits for a former owner's open transaction to end (its coordinator aborts it after
#: the transaction timeout, agents/transactions.py, plus up to the broker's check interval)
STABLE_WAIT = 60.0


#: called once when the stable wait finds a transaction open on the partition (it may fence the holder)
OnOpen = Callable[[TopicPartition], Awaitable[None]]


async def committed_tail(bootstrap: str, config: Mapping[str, Any], topic: str, partition: int, after: int,
                         stable: bool = False, on_open: OnOpen | None = None,
                         ) -> tuple[list[tuple[bytes | None, bytes | None]], int | None]:
    """The committed records of a changelog partition after offset ``after`` (``read_committed``), and
    the offset of the last one (None: there are none).

    A worker that takes a partition back may hold local state from before it lost it; whatever the
    owners in between committed is read here, so nothing is processed from the older state. ``stable``:
    first wait until no transaction is open on the partition (the last stable offset reaches the
    highwater seen at the start), so a former owner's last transaction is decided before the read;
    ``on_open`` is called when one is open.
    """
    tolerate_cleaned_control_batches()  # the changelog is compacted: the cleaner leaves empty control batches
    # the offsets are looked up before the partition is assigned: once it is, the consumer's fetch holds the
    # connection, and each lookup waits behind it (500 ms a lookup with aiokafka's default fetch wait)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **QUICK,
                                isolation_level="read_committed", client_id="krakenflow-catchup", **config)
    await consumer.start()
    records: list[tuple[bytes | None, bytes | None]] = []
    last: int | None = None
    try:
        tp = TopicPartition(topic, partition)
        if stable:
            await _until_stable(consumer, bootstrap, config, tp, on_open)
        end = (await consumer.end_offsets([tp]))[tp]  # read_committed: the last stable offset
        start = max(after + 1, (await consumer.beginning_offsets([tp]))[tp])
        # a committed transaction takes two offsets at least (a record and its marker): one offset after the
        # local state is the marker of its own last transaction, and reading it would wait out a fetch
        if end - start < 2:
            return records, last
        consumer.assign([tp])
        consumer.seek(tp, start)
        while await consumer.position(tp) < end:
            for message in (await consumer.getmany(tp, timeout_ms=200)).get(tp, []):
                if message.offset < end:
                    records.append((message.key, message.value))
                    last = message.offset
    finally:
        await consumer.stop()
    return records, last


async def _until_stable(consumer: AIOKafkaConsumer, bootstrap: str, config: Mapping[str, Any],
                        tp: TopicPartition, on_open: OnOpen | None = None) -> None:
    """Until ``tp``'s last stable offset (``consumer`` reads read_committed) reaches its highwater now."""
    plain = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="krakenflow-catchup",
                             **QUICK, **config)
    await plain.start()
    try:
        highwater = (await plain.end_offsets([tp]))[tp]
    finally:
        await plain.stop()
    started = time.monotonic()
    warned = False
    sighted = False
    while (stable := (await consumer.end_offsets([tp]))[tp]) < highwater:
        waited = time.monotonic() - started
        if not sighted:
            sighted = True  # a former owner's transaction is open: it commits, or is aborted (fenced, timed out)
            log.info("%s[%d]: a transaction is open (stable offset %d, highwater %d); reading once it ends",
                     tp.topic, tp.partition, stable, highwater)
            if on_open is not None:
                await on_open(tp)
        if waited > STABLE_WAIT:
            log.error("%s[%d]: a transaction has been open for %.0f s (stable offset %d, highwater %d); reading "
                      "what committed", tp.topic, tp.partition, waited, stable, highwater)
            return
        if not warned and waited > 1.0:
            warned = True
            log.warning("%s[%d]: waiting for a former owner's open transaction to end (stable offset %d, "
                        "highwater %d)", tp.topic, tp.partition, stable, highwater)
        await asyncio.sleep(0.05)  # polling the broker's stable offset: it has no wait for it


class MarkerAwareTableManager(TableManager):  # type: ignore[misc]
    """Faust's table manager with :class:`MarkerAwareRecovery` (``TableManager`` app setting)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = MarkerAwareRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery

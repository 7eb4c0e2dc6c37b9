"""The worker consumer's long fetch wait (``app/kafka_internals.long_idle_fetch_wait``) on a real Apache
Kafka: an idle consumer fetches a few times a second, not a hundred; a record still arrives at once; and a
partition whose records the consumer has not taken keeps the short wait, so its next record is not held
behind a long fetch of the other partitions."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.protocol.fetch import FetchRequest

from app.kafka_internals import long_idle_fetch_wait
from tests.brokers import shared_kafka
from tests.integration.test_kafka_writer import new_topic

pytestmark = pytest.mark.integration

SHORT_MS = 10
#: long enough that a fetch wrongly given it shows as a whole second of delay
LONG_MS = 3000


@contextlib.asynccontextmanager
async def two_partitions() -> AsyncIterator[tuple[str, list[TopicPartition], AIOKafkaConsumer, list[float],
                                                  AIOKafkaProducer]]:
    """A new two-partition topic, a started consumer of it with the long idle wait (and the times of the
    fetches it sends), and a producer."""
    bootstrap = shared_kafka().bootstrap
    topic = await new_topic(bootstrap, 2)
    tps = [TopicPartition(topic, p) for p in range(2)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="latest",
                                fetch_max_wait_ms=SHORT_MS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    try:
        consumer.assign(tps)
        for tp in tps:
            await consumer.position(tp)
        fetches: list[float] = []
        send: Callable[..., Awaitable[Any]] = consumer._client.send

        def counting(node_id: int, request: Any, *args: Any, **kwargs: Any) -> Awaitable[Any]:
            if isinstance(request, FetchRequest):
                fetches.append(time.monotonic())
            return send(node_id, request, *args, **kwargs)

        consumer._client.send = counting  # type: ignore[method-assign]
        long_idle_fetch_wait(consumer, LONG_MS)
        yield topic, tps, consumer, fetches, producer
    finally:
        await producer.stop()
        await consumer.stop()


async def test_an_idle_consumer_fetches_rarely_and_a_record_still_arrives_at_once() -> None:
    async with two_partitions() as (topic, tps, consumer, fetches, producer):
        window = time.monotonic()
        assert await consumer.getmany(timeout_ms=1500) == {}  # idle: 1.5 s of fetches answered empty
        idle = [t for t in fetches if t >= window]
        assert len(idle) <= 2, f"{len(idle)} fetches in 1.5 s idle: the short wait ({SHORT_MS} ms) is still used"
        sent = time.monotonic()
        await producer.send_and_wait(topic, b"now", partition=1)
        got = await consumer.getmany(timeout_ms=10_000)
        assert [m.value for m in got[tps[1]]] == [b"now"]
        assert time.monotonic() - sent < 1.0, "the long fetch was not answered when its record arrived"


async def test_a_partition_with_records_not_taken_keeps_the_short_wait() -> None:
    async with two_partitions() as (topic, tps, consumer, _, producer):
        await producer.send_and_wait(topic, b"first", partition=0)
        # partition 0's record is fetched and not taken: the fetches meanwhile hold partition 1 alone
        assert await consumer.getmany(tps[1], timeout_ms=500) == {}
        got = await consumer.getmany(tps[0], timeout_ms=10_000)
        assert [m.value for m in got[tps[0]]] == [b"first"]
        sent = time.monotonic()
        await producer.send_and_wait(topic, b"second", partition=0)
        got = await consumer.getmany(tps[0], timeout_ms=10_000)
        assert [m.value for m in got[tps[0]]] == [b"second"]
        # with the long wait, the fetch of partition 1 alone in flight would hold it up to 3 s
        assert time.monotonic() - sent < 1.0, "partition 0 waited behind a long fetch that left it out"

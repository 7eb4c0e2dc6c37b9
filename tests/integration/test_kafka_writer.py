"""The book agent's batch writer on a real Apache Kafka: keyed partitions as any Kafka client picks them,
idempotent and zstd-compressed on the apache-kafka profile, the embedded profile's single-record tail."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.kafka_writer import BatchWriter
from app.settings import Settings
from tests.brokers import shared_kafka

pytestmark = pytest.mark.integration


async def new_topic(bootstrap: str, partitions: int) -> str:
    name = f"kf-writer-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


async def committed_records(bootstrap: str, topic: str, until: int | None = None) -> list[tuple[int, bytes, bytes]]:
    """(offset, key, value) of every record a ``read_committed`` consumer (a table restore) reads from the
    beginning of ``topic``'s partition 0 to its last stable offset, or to offset ``until``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp] if until is None else until
        consumer.seek(tp, (await consumer.beginning_offsets([tp]))[tp])
        got: list[tuple[int, bytes, bytes]] = []
        while await consumer.position(tp) < end:
            batches = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
            got.extend((m.offset, m.key or b"", m.value or b"") for m in batches.get(tp, []) if m.offset < end)
        return got
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, topic: str, partitions: int, count: int) -> dict[int, list[tuple[bytes, bytes]]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        got: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in range(partitions)}
        while sum(map(len, got.values())) < count:
            for tp, batch in (await consumer.getmany(*tps, timeout_ms=5000)).items():
                got[tp.partition].extend((m.key or b"", m.value or b"") for m in batch)
        return got
    finally:
        await consumer.stop()


async def test_keyed_records_land_where_kafkas_default_partitioner_puts_them() -> None:
    bootstrap = await_bootstrap()
    topic = await new_topic(bootstrap, 8)
    keys = [f"PAIR{n}-USD".encode() for n in range(40)]
    writer = BatchWriter(bootstrap, "kf-writer-test", Settings().profile.writer_config())
    await writer.start()
    try:
        futures = await writer.send_keyed(topic, [(k, b"v-" + k) for k in keys])
        for f in futures:
            await f
    finally:
        await writer.stop()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)  # the stock client's partitioner, for comparison
    await producer.start()
    try:
        expected = {k: (await (await producer.send(topic, b"x", key=k))).partition for k in keys}
    finally:
        await producer.stop()
    got = await read_all(bootstrap, topic, 8, len(keys) * 2)
    for partition, records in got.items():
        for key, value in records:
            if value.startswith(b"v-"):
                assert expected[key] == partition, key
    assert writer.config == {"acks": "all", "enable_idempotence": True, "compression_type": "zstd"}


async def test_single_tail_sends_the_last_record_in_a_batch_of_its_own() -> None:
    bootstrap = await_bootstrap()
    topic = await new_topic(bootstrap, 1)
    writer = BatchWriter(bootstrap, "kf-writer-tail", Settings(broker_profile="embedded").profile.writer_config())
    await writer.start()
    try:
        records = [(b"k%d" % n, b"v%d" % n) for n in range(10)]
        futures = await writer.send_partition(topic, 0, records, single_tail=True)
        offsets = [(await f).offset for f in futures]
    finally:
        await writer.stop()
    assert len(futures) == 2 and offsets[-1] == 9  # the body's batch, then the tail on its own
    got = await read_all(bootstrap, topic, 1, 10)
    assert got[0] == records


def await_bootstrap() -> str:
    return shared_kafka().bootstrap

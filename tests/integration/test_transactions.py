"""The book agent's transactions on a real Apache Kafka, fenced by the consumer group (KIP-447 done in
``app/kafka_internals.py``): a transaction that carries a group generation the group has left is refused
and never visible, a worker given up stays given up until it is assigned again, and a new owner's read
of the changelog waits for a former owner's open transaction to be decided."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.transactions import Fenced, Transactions
from app.kafka_internals import group_membership
from app.kafka_writer import BatchWriter
from app.settings import Settings
from tables.recovery import committed_tail
from tests.brokers import shared_kafka
from tests.integration.test_kafka_writer import new_topic, read_all

pytestmark = pytest.mark.integration


async def member(bootstrap: str, group: str, topic: str) -> AIOKafkaConsumer:
    """A consumer that has joined ``group`` (its generation known; with one partition it may get none)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                session_timeout_ms=10_000, heartbeat_interval_ms=500)
    await consumer.start()
    while group_membership(consumer) is None:
        await consumer.getmany(timeout_ms=100)
    return consumer


async def poll(consumer: AIOKafkaConsumer) -> None:
    while True:
        await consumer.getmany(timeout_ms=100)


def transactions(bootstrap: str, worker: str, group: str, fence: str, membership: list[tuple[int, str] | None]) \
        -> Transactions:
    template = BatchWriter(bootstrap, "kf-txn-test", Settings().profile.writer_config())
    return Transactions(template, "kf-txn", f"{worker}-{uuid.uuid4().hex[:6]}", group, fence, lambda: membership[0])


async def commit(txns: Transactions, topic: str, value: bytes) -> dict[int, int]:
    return await txns.commit([0], {topic: [(b"k", value, None)]}, topic, {0: [(b"watermark", value)]})


async def test_a_transaction_of_a_generation_the_group_left_is_refused_and_never_visible() -> None:
    bootstrap = shared_kafka().bootstrap
    topic, fence = await new_topic(bootstrap, 1), await new_topic(bootstrap, 1)
    group = f"kf-txn-{uuid.uuid4().hex[:8]}"
    first = await member(bootstrap, group, fence)
    membership = [group_membership(first)]
    assert membership[0] is not None and membership[0][0] >= 1
    zombie = transactions(bootstrap, "zombie", group, fence, membership)
    second = None
    try:
        await commit(zombie, topic, b"before")
        stale = membership[0]
        polling = asyncio.ensure_future(poll(first))  # the first member rejoins while the second joins
        try:
            second = await member(bootstrap, group, fence)  # the group moves on to a new generation
        finally:
            polling.cancel()
        assert group_membership(second)[0] > stale[0]  # type: ignore[index]
        with pytest.raises(Fenced):
            await commit(zombie, topic, b"stale")
        # given up: refused without asking the group again, until the group assigns the partition anew
        membership[0] = None
        with pytest.raises(Fenced, match="given up"):
            await commit(zombie, topic, b"queued")
        assert zombie.is_fenced(0)
        zombie.assign([0])
        assert not zombie.is_fenced(0)
        membership[0] = group_membership(second)  # the current generation: accepted
        await commit(zombie, topic, b"current")
    finally:
        await zombie.close()
        await first.stop()
        if second is not None:
            await second.stop()
    got = await read_all(bootstrap, topic, 1, 4)  # read_committed: "before" twice, "current" twice
    assert [v for _, v in got[0]] == [b"before", b"before", b"current", b"current"]


async def test_a_new_owner_reads_the_changelog_only_once_the_former_owners_transaction_is_decided() -> None:
    bootstrap = shared_kafka().bootstrap
    topic = await new_topic(bootstrap, 1)
    former = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"kf-former-{uuid.uuid4().hex[:8]}")
    await former.start()
    try:
        await former.begin_transaction()
        await (await former.send(topic, b"committed-late", key=b"page", partition=0))
        reading = asyncio.ensure_future(committed_tail(bootstrap, {}, topic, 0, -1, stable=True))
        await asyncio.wait({reading}, timeout=1.0)  # bounded look: it must still be waiting
        assert not reading.done()
        await former.commit_transaction()
        records, last = await reading
    finally:
        await former.stop()
    assert records == [(b"page", b"committed-late")] and last == 0
    # without the wait, the read ends at the stable offset and misses the record
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"kf-former-{uuid.uuid4().hex[:8]}")
    await plain.start()
    try:
        await plain.begin_transaction()
        await (await plain.send(topic, b"open", key=b"page", partition=0))
        assert await committed_tail(bootstrap, {}, topic, 0, last) == ([], None)
        await plain.abort_transaction()
    finally:
        await plain.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        assert (await consumer.end_offsets([TopicPartition(topic, 0)]))[TopicPartition(topic, 0)] >= 2
    finally:
        await consumer.stop()

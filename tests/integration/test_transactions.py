"""The book agent's transactions on a real Apache Kafka, fenced by the consumer group (KIP-447 done in
``app/kafka_internals.py``) and by the new owner: a producer's first transaction of a partition carries
the group check and names it the partition's committer; a zombie's transaction is refused and never
visible once the new owner fenced its id, a worker given up stays given up until it is assigned again, and
a new owner's read of the changelog waits for a former owner's open transaction to be decided."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced

from agents.transactions import Committed, Fenced, Transactions
from app.kafka_internals import group_membership
from app.kafka_writer import BatchWriter
from app.settings import Settings
from tables.recovery import committed_tail
from tests.brokers import shared_kafka
from tests.integration.test_kafka_writer import committed_records, new_topic

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


async def commit(txns: Transactions, topic: str, value: bytes) -> Committed:
    return await txns.commit([0], {topic: [(b"k", value, None)]}, topic, {0: [(b"watermark", value)]})


async def committed(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    """Every committed record of ``topic``'s partition 0."""
    return [(key, value) for _, key, value in await committed_records(bootstrap, topic)]


async def new_generation(bootstrap: str, group: str, fence: str, first: AIOKafkaConsumer) -> AIOKafkaConsumer:
    """A second member joins ``group``: the group moves on to a new generation."""
    polling = asyncio.ensure_future(poll(first))  # the first member rejoins while the second joins
    try:
        return await member(bootstrap, group, fence)
    finally:
        polling.cancel()


async def test_a_zombie_fenced_by_the_new_owner_commits_nothing_more() -> None:
    bootstrap = shared_kafka().bootstrap
    topic, fence = await new_topic(bootstrap, 1), await new_topic(bootstrap, 1)
    group = f"kf-txn-{uuid.uuid4().hex[:8]}"
    first = await member(bootstrap, group, fence)
    membership = [group_membership(first)]
    assert membership[0] is not None and membership[0][0] >= 1
    zombie = transactions(bootstrap, "zombie", group, fence, membership)
    owner = transactions(bootstrap, "owner", group, fence, [None])
    second = None
    try:
        checked = await commit(zombie, topic, b"before")  # its first of the partition: checked, committer named
        assert checked.changelog[0][-1] == (b"\0committer\x000", zombie.transactional_id.encode())
        assert (zombie.checks, zombie.commits) == (1, 1)
        steady = await commit(zombie, topic, b"again")  # the partition is checked: no check, no committer
        assert steady.changelog[0] == [(b"watermark", b"again")] and zombie.checks == 1
        stale = membership[0]
        second = await new_generation(bootstrap, group, fence, first)
        assert group_membership(second)[0] > stale[0]  # type: ignore[index]
        await owner.fence_id(zombie.transactional_id)  # the new owner takes the partition over
        with pytest.raises(Fenced):  # epoch taken: a new producer, whose first transaction is checked
            await commit(zombie, topic, b"stale")
        assert zombie.reinits == 1 and zombie.fenced == 1
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
        await owner.close()
        await first.stop()
        if second is not None:
            await second.stop()
    committer = (b"\0committer\x000", zombie.transactional_id.encode())
    assert await committed(bootstrap, topic) == [  # read_committed: outputs, watermarks, committer records
        (b"k", b"before"), (b"watermark", b"before"), committer, (b"k", b"again"), (b"watermark", b"again"),
        (b"k", b"current"), (b"watermark", b"current"), committer]


async def test_a_producers_first_transaction_of_a_partition_is_refused_in_a_generation_the_group_left() -> None:
    bootstrap = shared_kafka().bootstrap
    topic, fence = await new_topic(bootstrap, 1), await new_topic(bootstrap, 1)
    group = f"kf-txn-{uuid.uuid4().hex[:8]}"
    first = await member(bootstrap, group, fence)
    stale = group_membership(first)
    second = await new_generation(bootstrap, group, fence, first)
    late = transactions(bootstrap, "late", group, fence, [stale])  # assigned, then paused before its first commit
    try:
        with pytest.raises(Fenced):
            await commit(late, topic, b"stale")
        assert late.fenced == 1
    finally:
        await late.close()
        await first.stop()
        await second.stop()
    assert await committed(bootstrap, topic) == []


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


async def test_a_new_owner_fences_whoever_holds_a_transaction_open_on_a_partition_it_takes_over() -> None:
    # a former owner paused inside its first transaction of an assignment: nothing committed names it
    bootstrap = shared_kafka().bootstrap
    topic = await new_topic(bootstrap, 2)
    owner = transactions(bootstrap, "owner", "kf-txn-unused", topic, [None])
    former = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{owner.id_prefix}former-{uuid.uuid4().hex[:6]}")
    foreign = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"another-app-{uuid.uuid4().hex[:6]}")
    await former.start()
    await foreign.start()
    try:
        await foreign.begin_transaction()  # another application's producer: never this app's to fence
        await (await foreign.send(topic, b"theirs", partition=0))
        assert await owner.open_holders(topic, 0) == []
        await foreign.abort_transaction()
        await former.begin_transaction()
        await (await former.send(topic, b"uncommitted", key=b"page", partition=0))
        assert await owner.open_holders(topic, 0) == [former._txn_manager.transactional_id]
        assert await owner.open_holders(topic, 1) == []

        async def fence_holders(tp: TopicPartition) -> None:
            for holder in await owner.open_holders(tp.topic, tp.partition):
                await owner.fence_id(holder)

        # fenced: its transaction is aborted now, not at its timeout (aiokafka's default: 60 s)
        read = committed_tail(bootstrap, {}, topic, 0, -1, stable=True, on_open=fence_holders)
        assert await asyncio.wait_for(read, timeout=20) == ([], None)
        assert owner.fenced_ids == 1
        with pytest.raises(ProducerFenced):
            await former.commit_transaction()
    finally:
        await owner.close()
        await former.stop()
        await foreign.stop()
    assert await committed(bootstrap, topic) == []

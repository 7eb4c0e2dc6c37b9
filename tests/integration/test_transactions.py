"""The book agent's per-partition transactions on a real Apache Kafka: a worker fenced from a raw
partition never initializes its transactional id again before the group assigns the partition anew,
whatever it still has queued, so it cannot fence the rightful owner (a zombie woken from a pause)."""

from __future__ import annotations

import uuid

import pytest

from agents.transactions import Fenced, Transactions
from app.kafka_writer import BatchWriter
from app.settings import Settings
from tests.brokers import shared_kafka
from tests.integration.test_kafka_writer import new_topic, read_all

pytestmark = pytest.mark.integration


def transactions(bootstrap: str, app_id: str) -> Transactions:
    template = BatchWriter(bootstrap, "kf-txn-test", Settings().profile.writer_config())
    return Transactions(template, app_id)


async def commit(txns: Transactions, topic: str, value: bytes) -> int | None:
    return await txns.commit(0, {topic: [(b"k", value, None)]}, topic, [(b"watermark", value)])


async def test_a_fenced_partition_stays_given_up_until_it_is_assigned_again() -> None:
    bootstrap = shared_kafka().bootstrap
    topic = await new_topic(bootstrap, 1)
    app_id = f"kf-txn-{uuid.uuid4().hex[:8]}"
    zombie, owner = transactions(bootstrap, app_id), transactions(bootstrap, app_id)
    try:
        await commit(zombie, topic, b"zombie-1")
        await owner.open(0)  # the new owner's initialization fences the paused one
        with pytest.raises(Fenced):
            await commit(zombie, topic, b"zombie-2")
        # a commit still queued in the zombie: refused without touching the id (a new producer would
        # fence the owner, and commit the zombie's stale table records after the owner's)
        with pytest.raises(Fenced):
            await commit(zombie, topic, b"zombie-3")
        assert zombie.is_fenced(0)
        await commit(owner, topic, b"owner-1")  # the owner was not fenced
        zombie.assign([0])  # the group gives the partition back: it may be initialized again
        assert not zombie.is_fenced(0)
    finally:
        await zombie.close()
        await owner.close()
    got = await read_all(bootstrap, topic, 1, 4)  # read_committed: zombie-1 twice, owner-1 twice
    assert [v for _, v in got[0]] == [b"zombie-1", b"zombie-1", b"owner-1", b"owner-1"]

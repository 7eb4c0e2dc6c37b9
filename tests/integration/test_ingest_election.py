"""The ingest lock group on a real Apache Kafka: candidates that join together settle on one holder.

Two ingests started at once (a deployment, a restart of both) once kept restarting each other's
rebalance for a minute and more, and neither became the live ingest."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.settings import Settings
from ingest.election import lock_consumer
from ingest.service import HEARTBEAT_INTERVAL, SESSION_TIMEOUT, Ingest
from tests.brokers import shared_kafka

pytestmark = pytest.mark.integration

#: a settled group gives the lock out within a heartbeat or two; a minute of churn is the failure
SETTLE_WITHIN = 15.0


class Watch(ConsumerRebalanceListener):  # type: ignore[misc]
    """Counts a candidate's assignments; ``settled`` between an assignment and the next revocation."""

    def __init__(self) -> None:
        self.assignments, self.settled = 0, False

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.settled = False

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.assignments, self.settled = self.assignments + 1, True


async def settle(candidates: list[AIOKafkaConsumer], watches: list[Watch], lock: TopicPartition) -> float:
    """Until all candidates are assigned and exactly one holds the lock (aiokafka joins and
    heartbeats in the background); returns how long that took."""
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_WITHIN:
        await asyncio.sleep(0.1)  # a poll of the listeners' state, as tests.cluster.wait_until does
        if all(w.settled for w in watches) and sum(lock in c.assignment() for c in candidates) == 1:
            return time.monotonic() - started
    raise AssertionError(f"no single lock holder after {SETTLE_WITHIN:.0f} s: "
                         f"{[w.assignments for w in watches]} assignments")


async def test_two_candidates_joining_at_once_settle_on_one_holder() -> None:
    bootstrap = shared_kafka().bootstrap
    for _ in range(3):  # the churn came from a race: each round had about even odds of it
        run = uuid.uuid4().hex[:8]
        settings = Settings(broker=f"kafka://{bootstrap}", topic_prefix=f"kf{run}", app_id=f"kf-lock-{run}")
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(settings.topic("ingest.lock"), 1, 1)])
        finally:
            await admin.close()
        lock = TopicPartition(settings.topic("ingest.lock"), 0)
        candidates = [lock_consumer(Ingest(settings), SESSION_TIMEOUT, HEARTBEAT_INTERVAL, f"candidate-{n}")
                      for n in range(2)]
        await asyncio.gather(*(c.start() for c in candidates))
        try:
            watches = [Watch() for _ in candidates]
            for c, watch in zip(candidates, watches, strict=True):
                c.subscribe([lock.topic], listener=watch)
            took = await settle(candidates, watches, lock)
        finally:
            # bounded: a member in a churning group waits out the rebalance timeout (5 min) to leave
            await asyncio.gather(*(asyncio.wait_for(c.stop(), 10) for c in candidates), return_exceptions=True)
        # the first join, and one more (or two, in a race) for the second candidate's: no churn
        assert sum(w.assignments for w in watches) <= 5, f"{[w.assignments for w in watches]} assignments in {took:.1f} s"

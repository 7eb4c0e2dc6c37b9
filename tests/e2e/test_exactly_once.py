"""Exactly-once on Apache Kafka: workers SIGKILLed under load, some with their RocksDB deleted; a
``read_committed`` consumer of the deltas sees every ``(symbol, epoch, seq)`` once, with no gap, and
its own books, rebuilt from them alone, verify every checksum and equal the exchange's."""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from models.symbols import normalize
from tests.brokers import DEFAULT, KAFKA
from tests.cluster import Cluster, wait_until
from tests.exactly_once import assert_exactly_once, seq_now

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(DEFAULT != KAFKA, reason="exactly-once needs Apache Kafka")]

PAIRS = ["BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "DOGE/USD", "ADA/USD"]
SYMBOLS = {normalize(p) for p in PAIRS}
DEPTH = 25
KILLS = 20
#: the workers' group session: each kill waits it out (the dead member leaves the group), so the shortest
#: that Kafka allows keeps the test short
SESSION_TIMEOUT = {"KRAKENFLOW_GROUP_SESSION_TIMEOUT": "6"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, PAIRS, depth=DEPTH, sim_args=("--pair-rate", "10", "--seed", "3"))
    try:
        c.start_ingest()
        yield c
    finally:
        c.close()


def test_twenty_worker_kills_leave_every_delta_exactly_once(cluster: Cluster) -> None:
    ports = {name: cluster.start_worker(name, env=SESSION_TIMEOUT) for name in ("a", "b")}
    wait_until(lambda: set(seq_now(ports["a"])) == SYMBOLS, 90, "books live on two workers")
    rng = random.Random(20)
    for kill in range(KILLS):
        victim = rng.choice(sorted(ports))
        survivor = next(n for n in ports if n != victim)
        before = seq_now(ports[survivor])
        cluster.stop(victim, signal.SIGKILL)
        cluster.start_worker(victim, web_port=ports[victim], fresh=kill % 3 == 2, env=SESSION_TIMEOUT)  # a third lose RocksDB
        wait_until(lambda: (lambda now: set(now) == SYMBOLS and all(now[s] > before.get(s, 0) + 2 for s in now))(
            seq_now(ports[survivor])), 120, f"every book to move on after kill {kill + 1}")

    assert_exactly_once(cluster, PAIRS, DEPTH)


def raw_offsets_committed(cluster: Cluster) -> int:
    """The sum of the worker group's committed ``kraken.raw`` offsets."""
    async def committed() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(cluster.env["KRAKENFLOW_APP_ID"])
        finally:
            await admin.close()
        return sum(o.offset for tp, o in offsets.items() if tp.topic == cluster.topic("raw") and o.offset > 0)

    return asyncio.run(committed())


def test_a_worker_killed_before_its_first_commit_leaves_every_record_to_the_next(cluster: Cluster) -> None:
    # its commits never end (each held open past the test): Faust still acks the raw records it processed,
    # so the group offset moves past records whose transaction never commits
    cluster.start_worker("a", env={"KRAKENFLOW_FAULT_COMMIT_HOLD_MS": "600000", **SESSION_TIMEOUT})
    wait_until(lambda: raw_offsets_committed(cluster) > 0, 60, "worker a's group offsets past its first records")
    cluster.stop("a", signal.SIGKILL)
    port = cluster.start_worker("b", env=SESSION_TIMEOUT)
    wait_until(lambda: set(seq_now(port)) == SYMBOLS, 120, "books live on the next worker")
    # the deltas of the aborted transaction, seen read_uncommitted, are redone the same and committed
    assert_exactly_once(cluster, PAIRS, DEPTH)

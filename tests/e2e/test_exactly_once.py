"""Exactly-once on Apache Kafka: workers SIGKILLed under load, some with their RocksDB deleted; a
``read_committed`` consumer of the deltas sees every ``(symbol, epoch, seq)`` once, with no gap, and
its own books, rebuilt from them alone, verify every checksum and equal the exchange's."""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

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

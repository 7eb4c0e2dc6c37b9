"""The ingest against the simulator: one live connection set per cluster, failover, reconnects, staleness."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Cluster, wait_until

pytestmark = pytest.mark.e2e

PAIRS = ["BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "DOGE/USD", "ADA/USD"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, PAIRS, depth=10, sim_args=("--pair-rate", "10", "--seed", "5"))
    c.env.update({"KRAKENFLOW_PAIRS_PER_CONNECTION": "2", "KRAKENFLOW_STALE_AFTER": "2",
                  "KRAKENFLOW_RESYNC_MIN_INTERVAL": "1", "KRAKENFLOW_CHANNELS": "book"})
    try:
        yield c
    finally:
        c.close()


def connections(c: Cluster) -> dict[str, list[str]]:
    """Simulator connections that subscribed to something: connection id -> symbols."""
    state = c.sim("state") or {}
    return {cid: symbols for cid, symbols in state.get("subscriptions", {}).items() if symbols}


def live_ingest(c: Cluster, names: list[str]) -> str:
    return next(n for n in names if "this process is the live ingest" in c.log(n))


def test_one_live_ingest_spread_over_connections_and_failover(cluster: Cluster) -> None:
    for name in ("ingest-1", "ingest-2"):
        cluster.start_ingest(name)
    first = wait_until(lambda: connections(cluster) if len(connections(cluster)) == 3 else None, 60,
                       "three connections of two pairs each")
    assert sorted(s for symbols in first.values() for s in symbols) == sorted(PAIRS)
    assert all(len(symbols) == 2 for symbols in first.values())
    live = live_ingest(cluster, ["ingest-1", "ingest-2"])
    standby = "ingest-2" if live == "ingest-1" else "ingest-1"
    assert "this process is the live ingest" not in cluster.log(standby)

    failover_ns = time.time_ns()
    cluster.stop(live, signal.SIGKILL)
    second = wait_until(lambda: connections(cluster) if len(connections(cluster)) == 3
                        and not set(connections(cluster)) & set(first) else None, 60, "the standby to take over")
    assert sorted(s for symbols in second.values() for s in symbols) == sorted(PAIRS)
    assert "this process is the live ingest" in cluster.log(standby)

    def books_after_failover(records: list[dict[str, Any]]) -> bool:
        """Every pair has books fed by the standby (frames it received after the failover)."""
        fed = {d["symbol"] for d in records if d["ts_recv_ns"] > failover_ns and not d["is_snapshot"]}
        return fed == {p.replace("/", "-") for p in PAIRS}

    cluster.start_worker()
    deltas = cluster.read("book.deltas", until=books_after_failover, timeout=120)
    assert all(d["checksum_ok"] for d in deltas), "every book verifies across the failover"
    after = [d for d in deltas if d["ts_recv_ns"] > failover_ns]
    assert {d["symbol"] for d in after if d["is_snapshot"]} == {p.replace("/", "-") for p in PAIRS}, \
        "the standby started every book from a fresh snapshot"


def test_reconnects_after_drops_and_resyncs_a_silent_pair(cluster: Cluster) -> None:
    cluster.start_ingest()
    cluster.start_worker()
    before = wait_until(lambda: connections(cluster) if len(connections(cluster)) == 3 else None, 60, "connected")
    assert cluster.sim("drop")["dropped"] >= 3
    after = wait_until(lambda: connections(cluster) if len(connections(cluster)) == 3
                       and not set(connections(cluster)) & set(before) else None, 60, "reconnected")
    assert sorted(s for v in after.values() for s in v) == sorted(PAIRS)

    cluster.sim("silence", symbol="SOL/USD", on=1)
    try:
        events = cluster.read("book.events", until=lambda r: any(
            e["symbol"] == "SOL-USD" and e["state"] == "stale" for e in r), timeout=60)
        assert any(e["symbol"] == "SOL-USD" and e["state"] == "stale" for e in events)
        wait_until(lambda: "resync SOL/USD" in cluster.log("ingest"), 30, "the ingest to resync the silent pair")
        assert "no book data for 2 s" in cluster.log("ingest")
    finally:
        cluster.sim("silence", symbol="SOL/USD", on=0)
    deltas = cluster.read("book.deltas", until=lambda r: sum(
        d["is_snapshot"] and d["symbol"] == "SOL-USD" for d in r) >= 3)
    assert all(d["checksum_ok"] for d in deltas)

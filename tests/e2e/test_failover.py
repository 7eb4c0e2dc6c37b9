"""Workers stopped and killed: partitions hand over, books restart exactly, nothing is lost."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from models.symbols import normalize
from tests.brokers import EMBEDDED, KAFKA
from tests.cluster import Cluster, http_json, if_levels_equal, wait_until

pytestmark = pytest.mark.e2e

PAIRS = ["BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "DOGE/USD", "ADA/USD", "LTC/USD", "PEPE/USD"]
SYMBOLS = {normalize(p) for p in PAIRS}


def worker_warnings(c: Cluster) -> str:
    """The workers' warnings about where partitions resumed (for a failure's message)."""
    lines = []
    for path in sorted(c.tmp.glob("*.log")):
        lines += [f"{path.stem}: {line[:300]}" for line in path.read_text(errors="replace").splitlines()
                  if ("WARNING" in line or "ERROR" in line) and "producer buffer full" not in line]
    return "\n".join(lines[-60:])


def assert_nothing_lost(c: Cluster) -> list[dict[str, Any]]:
    """Every pair's seq runs 1..n without a gap; repeats are exact duplicates with the same lineage."""
    deltas = c.read("book.deltas")
    bad = [d for d in deltas if not d["checksum_ok"]]
    if bad:  # show the story of the first bad pair before failing
        story = [(d["seq"], d["raw_partition"], d["raw_offset"], d["checksum_ok"]) for d in deltas
                 if d["symbol"] == bad[0]["symbol"]]
        raise AssertionError(f"checksum failures: {[(d['symbol'], d['seq']) for d in bad][:5]}; {story[-80:]}")
    for symbol in SYMBOLS:
        by_seq: dict[int, dict[str, Any]] = {}
        for d in (d for d in deltas if d["symbol"] == symbol):
            first = by_seq.setdefault(d["seq"], d)
            if first is not d:  # re-emitted after a crash: identifiable, identical
                assert (first["raw_partition"], first["raw_offset"]) == (d["raw_partition"], d["raw_offset"]), \
                    f"{symbol} seq {d['seq']} from two raw records; the workers said:\n{worker_warnings(c)}"
                assert (first["bids"], first["asks"]) == (d["bids"], d["asks"])
        assert sorted(by_seq) == list(range(1, len(by_seq) + 1)), f"{symbol}: a seq is missing"
    events = c.read("book.events")
    assert [e for e in events if e["state"] in ("invalidated", "resyncing")] == [], "no resync was needed"
    return deltas


def books_equal_exchange(c: Cluster, port: int) -> None:
    assert c.sim("pause", on=1)["ok"]
    try:
        for pair in PAIRS:
            exchange = c.sim("book", symbol=pair, depth=25)
            url = f"http://127.0.0.1:{port}/books/{normalize(pair)}/?depth=25"
            # all 25 levels, not the checksum (top 10 only): a last deep-only frame may still be in flight
            book = wait_until(lambda: if_levels_equal(http_json(url), exchange), 60,
                              f"{pair} to hold exactly the exchange's 25 levels")
            assert (book["bids"], book["asks"]) == (exchange["bids"], exchange["asks"])
    finally:
        c.sim("pause", on=0)


def seq_now(c: Cluster, port: int) -> dict[str, int]:
    listing = http_json(f"http://127.0.0.1:{port}/books/") or {"books": []}
    return {b["symbol"]: b["seq"] for b in listing["books"]}


@pytest.fixture(params=[KAFKA, EMBEDDED])
def cluster(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Cluster]:
    """On Apache Kafka and on the embedded broker: the restart cases its workarounds exist for."""
    c = Cluster(tmp_path, PAIRS, depth=25, sim_args=("--pair-rate", "15", "--seed", "3"), broker=request.param)
    try:
        c.start_ingest()
        yield c
    finally:
        c.close()


def test_two_workers_split_partitions_and_a_killed_one_hands_over(cluster: Cluster) -> None:
    a = cluster.start_worker("a")
    b = cluster.start_worker("b")

    def split() -> bool:
        listing = http_json(f"http://127.0.0.1:{a}/books/") or {"books": []}
        workers = {row["worker"] for row in listing["books"]}
        return {row["symbol"] for row in listing["books"]} == SYMBOLS and len(workers) == 2

    wait_until(split, 90, "both workers to own pairs")
    owned_by_b = {r["symbol"] for r in http_json(f"http://127.0.0.1:{b}/books/?local=1")["books"]}
    assert owned_by_b and owned_by_b != SYMBOLS
    for symbol in owned_by_b:  # asked on a, answered by b (the request is routed to the owner)
        url = f"http://127.0.0.1:{a}/books/{symbol}/?depth=3"
        # right after a rebalance a's view of the assignment may lag for a moment
        routed = wait_until(lambda: (lambda r: r if r and r.get("symbol") == symbol else None)(http_json(url)),
                            30, f"{symbol} to be served through worker a")
        assert len(routed["bids"]) == 3 and routed["state"] == "live"
    before = seq_now(cluster, a)
    cluster.stop("b", signal.SIGKILL)
    # until the group's session times out (10 s), b still owns its pairs: a says so, with the reason
    symbol = sorted(owned_by_b)[0]
    refused = http_json(f"http://127.0.0.1:{a}/books/{symbol}/?depth=3")
    assert refused["status"] == 503 and refused["owner"].endswith(f":{b}") and refused["reason"], refused
    listing = http_json(f"http://127.0.0.1:{a}/books/")
    assert [w["worker"] for w in listing["unanswered"]] == [refused["owner"].rstrip("/")], listing["unanswered"]
    assert not owned_by_b & {row["symbol"] for row in listing["books"]}

    def taken_over() -> bool:
        local = {r["symbol"]: r for r in http_json(f"http://127.0.0.1:{a}/books/?local=1")["books"]}
        return set(local) == SYMBOLS and all(local[s]["seq"] > before.get(s, 0) for s in owned_by_b)

    wait_until(taken_over, 90, "worker a to take over b's pairs")
    assert_nothing_lost(cluster)
    books_equal_exchange(cluster, a)


def test_restart_is_exact_with_and_without_local_rocksdb(cluster: Cluster) -> None:
    port = cluster.start_worker("w")
    wait_until(lambda: set(seq_now(cluster, port)) == SYMBOLS and min(seq_now(cluster, port).values()) > 20, 90,
               "books live with traffic")

    # SIGTERM, local RocksDB kept: state comes from RocksDB plus the changelog tail
    cluster.stop("w", signal.SIGTERM)
    port = cluster.start_worker("w", web_port=port)
    before = seq_now(cluster, port)
    wait_until(lambda: all(v > before.get(k, 0) + 10 for k, v in seq_now(cluster, port).items())
               and set(seq_now(cluster, port)) == SYMBOLS, 90, "processing to resume after SIGTERM")

    # SIGKILL and the local RocksDB gone: state comes from the changelog alone
    cluster.stop("w", signal.SIGKILL)
    port = cluster.start_worker("w", web_port=port, fresh=True)
    before = seq_now(cluster, port)
    wait_until(lambda: set(seq_now(cluster, port)) == SYMBOLS
               and all(v > before.get(k, 0) + 10 for k, v in seq_now(cluster, port).items()), 90,
               "processing to resume after SIGKILL")
    deltas = assert_nothing_lost(cluster)
    snapshots = [d for d in deltas if d["is_snapshot"]]
    assert len(snapshots) == len(PAIRS), "restarts rebuilt books from tables, no new exchange snapshot"
    books_equal_exchange(cluster, port)

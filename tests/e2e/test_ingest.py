"""The ingest against the simulator: one live connection set per cluster, failover, reconnects, staleness."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from sim.pairs import catalogue
from tests.brokers import DEFAULT, KAFKA
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


def connects(c: Cluster) -> int:
    """WebSocket connections the simulator has accepted so far (each one spends Kraken's budget)."""
    return len(c.sim("state")["connects"])


def full_log(c: Cluster, name: str) -> str:
    return (c.tmp / f"{name}.log").read_text(errors="replace")


def ingest_live(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith("krakenflow_ingest_live "))


def lock_group_members(c: Cluster) -> list[str] | None:
    """Client ids of the ingest lock group's members, as its coordinator sees them (None: not known)."""
    async def describe() -> list[str] | None:
        admin = AIOKafkaAdminClient(bootstrap_servers=c.bootstrap)
        await admin.start()
        try:
            [response] = await admin.describe_consumer_groups([f"{c.env['KRAKENFLOW_APP_ID']}-ingest"])
            # (error_code, group_id, state, protocol_type, protocol, members, ...); a member is
            # (member_id, [group_instance_id,] client_id, client_host, metadata, assignment)
            error, *_, members = response.groups[0][:6]
            return None if error else [m[-4] for m in members]
        finally:
            await admin.close()

    return asyncio.run(describe())


def frames_written_after(c: Cluster, pid: int, after_ns: int) -> list[tuple[int, int]]:
    """(partition, offset) of raw records of the ingest ``pid`` received after ``after_ns``."""
    return [(r["_partition"], r["_offset"]) for r in c.read("raw", until=None)
            if r["_headers"]["conn_id"].split(":")[1] == str(pid) and int(r["_headers"]["recv_ns"]) > after_ns]


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
    assert_stamped(cluster.read("raw", until=None))


def assert_stamped(records: list[dict[str, Any]]) -> None:
    """Each ingest stamps every book frame it writes after its instrument snapshot with the pair's precision
    (the ``prec`` header), on all its connections, the ones without the instrument channel too; before it,
    with nothing (``b""``) or already with the right precision (what an instrument frame it dropped taught
    it: a standby's, or one received while the lock was in doubt), never a wrong one. Between them, the
    ingests stamped every pair (the one killed may have written nothing: its frames can still be in its
    producer when the SIGKILL comes)."""
    expected = {s.symbol: f"{s.price_precision},{s.qty_precision}" for s in catalogue()}
    ingests: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        ingests.setdefault(r["_headers"]["conn_id"].split(":")[1], []).append(r)
    stamped: set[str] = set()
    for written in ingests.values():
        learnt = min((int(r["_headers"]["recv_ns"]) for r in written if r.get("channel") == "instrument"),
                     default=1 << 63)
        books = [(r["data"][0]["symbol"], int(r["_headers"]["recv_ns"]) > learnt, r["_headers"]["prec"])
                 for r in written if r.get("channel") == "book"]
        assert [b for b in books if b[2] != expected[b[0]] and (b[1] or b[2] != "")] == []
        stamped |= {symbol for symbol, after, _ in books if after}
    assert stamped == set(PAIRS)


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
    # The simulator's market moves on while SOL/USD is silent, also between the resync's snapshot and
    # the end of the silence: the first update after it can then not verify. That must be caught and
    # healed by a fresh snapshot; every other book verifies throughout.
    bad = [d for d in deltas if not d["checksum_ok"]]
    assert {d["symbol"] for d in bad} <= {"SOL-USD"}, [(d["symbol"], d["seq"]) for d in bad]
    if bad:
        healed = cluster.read("book.deltas", until=lambda r: any(
            d["symbol"] == "SOL-USD" and d["is_snapshot"] and d["checksum_ok"] and d["seq"] > bad[-1]["seq"]
            for d in r))
        assert healed
        assert any(e["symbol"] == "SOL-USD" and e["state"] == "restored" and e["seq"] > bad[-1]["seq"]
                   for e in cluster.read("book.events"))


def test_a_paused_ingest_that_lost_the_lock_is_fenced_out_of_the_books(cluster: Cluster) -> None:
    for name in ("ingest-1", "ingest-2"):
        cluster.start_ingest(name)
    wait_until(lambda: len(connections(cluster)) == 3, 60, "three connections")
    cluster.start_worker()
    live = live_ingest(cluster, ["ingest-1", "ingest-2"])
    standby = "ingest-2" if live == "ingest-1" else "ingest-1"
    old_pid = cluster.procs[live].pid
    cluster.read("book.deltas", until=lambda r: len(r) >= 60)

    cluster.procs[live].send_signal(signal.SIGSTOP)  # frozen: it keeps its sockets, loses its group session
    try:
        wait_until(lambda: "this process is the live ingest" in cluster.log(standby), 60, "the standby to take over")
        takeover_ns = time.time_ns()
        cluster.read("book.deltas", until=lambda r: sum(d["ts_recv_ns"] > takeover_ns for d in r) >= 30)
    finally:
        cluster.procs[live].send_signal(signal.SIGCONT)  # both believe they are live, for a moment
    # the resumed ingest rejoins the election: it gives the role up, or wins it anew and starts over
    wait_until(lambda: "ingest role released" in cluster.log(live) or "reconnecting to Kraken" in cluster.log(live),
               60, "the resumed ingest to find out it lost the lock")
    resumed_ns = time.time_ns()
    cluster.read("book.deltas", until=lambda r: sum(d["ts_recv_ns"] > resumed_ns for d in r) >= 30)

    records = cluster.read("raw", until=None)  # values with their headers
    generations = {(r["_partition"], r["_offset"]): int(r["_headers"]["lock_gen"]) for r in records}
    # a frame is a zombie when a newer generation had written its partition before it
    zombie, newest = set(), {}  # type: ignore[var-annotated]
    for (partition, offset), generation in sorted(generations.items()):
        if generation < newest.get(partition, -1):
            zombie.add((partition, offset))
        newest[partition] = max(newest.get(partition, -1), generation)
    writers = {r["_headers"]["conn_id"].split(":")[1] for r in records if (r["_partition"], r["_offset"]) in zombie}
    assert writers <= {str(old_pid)}, "only the paused ingest wrote behind a newer generation"
    # Whether the resumed ingest writes before its heartbeat tells it the news is a race; when it does,
    # none of it may reach a book. The forged-frame test below makes that case certain.
    deltas = cluster.read("book.deltas", until=None)
    assert not {(d["raw_partition"], d["raw_offset"]) for d in deltas} & zombie, "a fenced frame reached a book"
    assert [(d["symbol"], d["seq"]) for d in deltas if d["checksum_ok"] is False] == [], "a checksum failed"
    dead = cluster.read("deadletter", until=None)
    fenced = {(d["raw_partition"], d["raw_offset"]) for d in dead if d["reason"].startswith("fenced:")}
    assert zombie <= fenced, "every fenced frame is dead-lettered with its reason"


def test_a_frame_of_an_older_lock_generation_is_fenced_and_dead_lettered(cluster: Cluster) -> None:
    cluster.start_ingest()
    cluster.start_worker()
    def book_updates(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [x for x in records if x.get("channel") == "book" and x.get("type") == "update"
                and x["_headers"].get("lock_gen") is not None]

    raw = cluster.read("raw", until=lambda r: len(book_updates(r)) >= 20)
    live = book_updates(raw)[-1]
    generation = int(live["_headers"]["lock_gen"])
    assert generation >= 1, live["_headers"]
    # A real update frame again, as a deposed ingest that woke up would write it: one generation older.
    value = orjson.dumps({k: v for k, v in live.items() if not k.startswith("_")})
    headers = [(k, v.encode()) for k, v in live["_headers"].items() if k != "lock_gen"]
    offset = cluster.produce("raw", live["data"][0]["symbol"].encode(), value, live["_partition"],
                             [*headers, ("lock_gen", str(generation - 1).encode())])
    forged = (live["_partition"], offset)

    dead = cluster.read("deadletter", until=lambda r: any((d["raw_partition"], d["raw_offset"]) == forged for d in r))
    reason = next(d["reason"] for d in dead if (d["raw_partition"], d["raw_offset"]) == forged)
    assert reason.startswith(f"fenced: written by an ingest of lock generation {generation - 1}"), reason
    after = time.time_ns()
    deltas = cluster.read("book.deltas", until=lambda r: sum(d["ts_recv_ns"] > after for d in r) >= 20)
    assert forged not in {(d["raw_partition"], d["raw_offset"]) for d in deltas}, "the fenced frame reached a book"
    assert [(d["symbol"], d["seq"]) for d in deltas if d["checksum_ok"] is False] == [], "a checksum failed"


@pytest.mark.skipif(DEFAULT != KAFKA, reason="alters a topic config on Apache Kafka")
def test_batches_kafka_refused_leave_no_pair_stuck_and_every_pair_resynced(cluster: Cluster) -> None:
    """aiokafka's idempotent producer never takes back a sequence number: after one refused batch,
    Kafka refuses every later batch to that partition (OutOfOrderSequenceNumber) until the producer
    is replaced. Batches are refused here by shrinking ``kraken.raw``'s max.message.bytes for a while."""
    cluster.env["KRAKENFLOW_INGEST_RELEASE_AFTER"] = "600"  # no lock release (and new producer) to hide behind
    metrics_port = cluster.start_ingest()
    wait_until(lambda: len(connections(cluster)) == 3, 60, "connected")
    cluster.read("raw", until=lambda r: len(r) > 100, timeout=60)
    cluster.alter_topic("raw", {"max.message.bytes": "100"})  # smaller than any record batch
    try:
        wait_until(lambda: "not delivered to Kafka" in cluster.log("ingest"), 30, "a refused batch")
    finally:
        cluster.alter_topic("raw", {"max.message.bytes": None})
    restored_ns = time.time_ns()

    def resumed(records: list[dict[str, Any]]) -> bool:
        """Every pair has a snapshot received after the restore, and updates after it."""
        after = [(r["_headers"].get("recv_ns"), r) for r in records if "recv_ns" in r["_headers"]]
        fresh = [r for ns, r in after if int(ns) > restored_ns and r.get("channel") == "book"]
        snapshots = {r["data"][0]["symbol"] for r in fresh if r.get("type") == "snapshot"}
        updates = {r["data"][0]["symbol"] for r in fresh if r.get("type") == "update"}
        return snapshots == updates == set(PAIRS)

    cluster.read("raw", until=resumed, timeout=60)
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    renewals = [float(line.split()[1]) for line in text.splitlines()
                if line.startswith("krakenflow_ingest_producer_renewals_total")]
    assert renewals and renewals[0] >= 1
    assert cluster.procs["ingest"].poll() is None, "the ingest lives on"


def test_an_ingest_woken_after_a_takeover_stands_by_and_costs_no_connect(cluster: Cluster) -> None:
    """Paused past its group session, the live ingest is replaced. Woken, it must not take the lock back
    (a second handover: new connections, fresh snapshots for every pair) nor write what it reads after
    waking: it stands by and closes its connections; the replacement carries on without a reconnect."""
    ports = {name: cluster.start_ingest(name) for name in ("ingest-1", "ingest-2")}
    first = wait_until(lambda: connections(cluster) if len(connections(cluster)) == 3 else None, 60, "three connections")
    cluster.start_worker()
    live = live_ingest(cluster, list(ports))
    standby = "ingest-2" if live == "ingest-1" else "ingest-1"
    paused = cluster.procs[live]
    cluster.read("book.deltas", until=lambda r: len(r) >= 60)

    paused.send_signal(signal.SIGSTOP)  # frozen: it keeps its sockets, loses its group session
    stopped_ns = time.time_ns()
    try:
        wait_until(lambda: "this process is the live ingest" in cluster.log(standby), 60, "the standby to take over")
        # the replacement's three connections besides the paused ingest's, open while it is stopped
        both = wait_until(lambda: connections(cluster) if len(connections(cluster)) == 6 else None, 60,
                          "the replacement's connections")
        replacement = set(both) - set(first)
        spent = connects(cluster)
        # the replacement's own fresh snapshots (its takeover) are read before the wake is stamped: they
        # arrive just after its connections open, and are not a start-over
        symbols = {p.replace("/", "-") for p in PAIRS}
        cluster.read("book.deltas", until=lambda r: {d["symbol"] for d in r if d["is_snapshot"]
                                                     and d["ts_recv_ns"] > stopped_ns} == symbols, timeout=60)
        woken_ns = time.time_ns()
    finally:
        paused.send_signal(signal.SIGCONT)

    wait_until(lambda: set(connections(cluster)) == replacement, 60, "the woken ingest to close its connections")
    wait_until(lambda: ingest_live(ports[live]) == 0, 30, "the woken ingest to stand by")

    def advanced(records: list[dict[str, Any]]) -> bool:
        after = [d for d in records if d["ts_recv_ns"] > woken_ns and not d["is_snapshot"]]
        return {d["symbol"] for d in after} == symbols and len(after) >= 60

    deltas = cluster.read("book.deltas", until=advanced, timeout=90)
    assert connects(cluster) == spent, "a Kraken connect after the wake"
    assert set(connections(cluster)) == replacement, "the replacement kept its connections"
    assert ingest_live(ports[standby]) == 1, "the replacement holds the lock"
    assert full_log(cluster, live).count("this process is the live ingest") == 1, "the woken ingest took the lock back"
    assert "ingest role released" not in full_log(cluster, standby), "the replacement gave the lock up"
    assert frames_written_after(cluster, paused.pid, woken_ns) == [], "the woken ingest wrote what it read after waking"
    assert not [d for d in deltas if d["ts_recv_ns"] > woken_ns and d["is_snapshot"]], "books started over"
    assert [(d["symbol"], d["seq"]) for d in deltas if d["checksum_ok"] is False] == [], "a checksum failed"


def test_an_ingest_paused_past_its_session_with_no_rival_carries_on_without_a_reconnect(cluster: Cluster) -> None:
    """The only candidate, paused until the group drops it, wins the lock back on waking. Nobody wrote
    in between and every frame it read is still there to publish: its connections carry on (no
    connect spent, no fresh snapshot), and every book goes on verifying in the same epoch."""
    cluster.env["KRAKENFLOW_STALE_AFTER"] = "60"  # a pause must not look like silent pairs (they would resync)
    cluster.start_ingest()
    first = wait_until(lambda: connections(cluster) if len(connections(cluster)) == 3 else None, 60, "three connections")
    cluster.start_worker()
    symbols = {p.replace("/", "-") for p in PAIRS}
    before = cluster.read("book.deltas", until=lambda r: len(r) >= 60 and {d["symbol"] for d in r} == symbols)
    spent = connects(cluster)
    paused = cluster.procs["ingest"]
    paused.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: lock_group_members(cluster) == [], 60, "the lock group to drop the paused ingest")
        woken_ns = time.time_ns()
    finally:
        paused.send_signal(signal.SIGCONT)

    wait_until(lambda: full_log(cluster, "ingest").count("ingest lock held in generation") >= 2, 60,
               "the ingest to win its lock back")

    def advanced(records: list[dict[str, Any]]) -> bool:
        after = [d for d in records if d["ts_recv_ns"] > woken_ns]
        return {d["symbol"] for d in after} == symbols and len(after) >= 60

    deltas = cluster.read("book.deltas", until=advanced, timeout=90)
    assert connects(cluster) == spent, "a Kraken connect after the pause"
    assert set(connections(cluster)) == set(first), "the connections carried on"
    assert not [d for d in deltas if d["ts_recv_ns"] > woken_ns and d["is_snapshot"]], "books started over"
    assert [(d["symbol"], d["seq"]) for d in deltas if d["checksum_ok"] is False] == [], "a checksum failed"
    epochs = {d["symbol"]: d["epoch"] for d in before}
    assert {d["symbol"]: d["epoch"] for d in deltas} == epochs, "a book began a new epoch"
    dead = cluster.read("deadletter", until=None)
    assert not [d for d in dead if d["reason"].startswith("fenced:")], "a frame was fenced"

"""The pipeline end to end: simulator -> ingest -> embedded broker -> Faust worker -> topics and views."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from krakenflow.client import BookTracker
from models.symbols import normalize
from tests.cluster import Cluster, http_json, if_levels_equal, wait_until

pytestmark = pytest.mark.e2e

PAIRS = ["BTC/USD", "ETH/USD", "PEPE/USD", "BTC/JPY", "SHIB/USD", "MINA/GBP"]
SYMBOLS = {normalize(p) for p in PAIRS}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("pipeline"), PAIRS, depth=25, sim_args=("--pair-rate", "25", "--seed", "7"))
    try:
        c.start_ingest()
        c.web = c.start_worker()  # type: ignore[attr-defined]
        yield c
    finally:
        c.close()


def book_url(c: Cluster, symbol: str, depth: int = 25) -> str:
    return f"http://127.0.0.1:{c.web}/books/{symbol}/?depth={depth}"  # type: ignore[attr-defined]


def test_books_go_live_and_every_checksum_verifies(cluster: Cluster) -> None:
    deltas = cluster.read("book.deltas", until=lambda r: {d["symbol"] for d in r} >= SYMBOLS and len(r) >= 1500)
    assert [d for d in deltas if not d["checksum_ok"]] == []
    for symbol in SYMBOLS:
        mine = [d for d in deltas if d["symbol"] == symbol]
        assert mine[0]["is_snapshot"], symbol
        assert [d["seq"] for d in mine] == list(range(1, len(mine) + 1)), f"{symbol}: seq has gaps"
        assert mine[0]["exchange"] == "kraken" and mine[0]["exchange_symbol"] == symbol.replace("-", "/")
        assert all(isinstance(p, str) and isinstance(q, str) for d in mine for p, q in d["bids"] + d["asks"])
        assert all(d["ts_recv_ns"] <= d["ts_emit_ns"] for d in mine)
    events = cluster.read("book.events", until=lambda r: {e["symbol"] for e in r if e["state"] == "live"} >= SYMBOLS)
    assert {e["symbol"] for e in events if e["state"] == "live"} >= SYMBOLS


def test_worker_books_and_rebuilt_deltas_equal_the_exchange(cluster: Cluster) -> None:
    assert cluster.sim("pause", on=1)["ok"]
    try:
        exchange = {p: cluster.sim("book", symbol=p, depth=25) for p in PAIRS}
        for pair in PAIRS:
            symbol = normalize(pair)
            # equal checksums would not do: they cover the top 10, and a last frame changing only deeper
            # levels may still be in flight. The paused exchange no longer moves, so wait for all 25.
            book = wait_until(lambda: if_levels_equal(http_json(book_url(cluster, symbol)), exchange[pair]),
                              30, f"{symbol} to hold exactly the exchange's 25 levels")
            assert book["state"] == "live"

        tracker = BookTracker([normalize(p) for p in PAIRS])  # the client library, fed from the topic's start
        applied = 0

        def rebuilt(records: list[dict[str, Any]]) -> bool:
            nonlocal applied
            for d in records[applied:]:
                tracker.feed(d)
            applied = len(records)
            return all(tracker.state(normalize(p)) == "live" and if_levels_equal(
                {"bids": [list(x) for x in tracker.book(normalize(p)).bids],
                 "asks": [list(x) for x in tracker.book(normalize(p)).asks]}, exchange[p]) for p in PAIRS)

        cluster.read("book.deltas", until=rebuilt)
        for pair in PAIRS:
            bids = [list(level) for level in tracker.book(normalize(pair)).bids]
            asks = [list(level) for level in tracker.book(normalize(pair)).asks]
            assert bids == exchange[pair]["bids"] and asks == exchange[pair]["asks"], pair
    finally:
        cluster.sim("pause", on=0)


def test_corrupted_checksum_resyncs_that_pair_only_while_others_flow(cluster: Cluster) -> None:
    started = time.time_ns()
    assert cluster.sim("corrupt", symbol="ETH/USD")["ok"]

    def restored(records: list[dict[str, Any]]) -> bool:
        return any(e["symbol"] == "ETH-USD" and e["state"] == "restored" and e["ts_ns"] > started for e in records)

    events = [e for e in cluster.read("book.events", until=restored) if e["ts_ns"] > started]
    eth = [e for e in events if e["symbol"] == "ETH-USD"]
    # a stale book that gets data again turns live first, and a book still starting does too
    eth = eth[next((i for i, e in enumerate(eth) if e["state"] == "invalidated"), 0):]
    assert [e["state"] for e in eth][:3] == ["invalidated", "resyncing", "restored"]
    assert "checksum mismatch" in eth[0]["reason"]
    assert [e for e in events if e["symbol"] != "ETH-USD" and e["state"] in ("invalidated", "resyncing")] == []
    invalid_at, restored_at = eth[0]["ts_ns"], eth[2]["ts_ns"]
    deltas = cluster.read("book.deltas", until=lambda r: any(d["ts_emit_ns"] > restored_at for d in r))
    during = {d["symbol"] for d in deltas if invalid_at < d["ts_emit_ns"] < restored_at}
    # at 25 events/s per pair, every other pair has moved within 0.5 s; a quicker resync leaves no room
    if restored_at - invalid_at > 500_000_000:
        assert during - {"ETH-USD"}, "other pairs kept flowing during the resync"
    after = [d for d in deltas if d["symbol"] == "ETH-USD" and d["ts_emit_ns"] >= restored_at]
    assert after and all(d["checksum_ok"] for d in after)


def test_bad_frames_go_to_the_dead_letter_topic_and_processing_continues(cluster: Cluster) -> None:
    garbage = [b'{"channel":"book","type":"upd', b"\xff\xfe not json", b'{"channel":"orders","data":[]}']

    async def publish() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, max_batch_size=1)
        await producer.start()
        try:
            for value in garbage:
                await (await producer.send(cluster.topic("raw"), value, key=b"BTC/USD"))
        finally:
            await producer.stop()

    before = max(d["seq"] for d in cluster.read("book.deltas", until=lambda r: len(r) > 0) if d["symbol"] == "BTC-USD")
    asyncio.run(publish())
    dead = cluster.read("deadletter", until=lambda r: len(r) >= 3)
    reasons = {d["raw"][:20]: d["reason"] for d in dead}
    assert reasons['{"channel":"book","t'].startswith("invalid JSON")
    assert "unknown channel 'orders'" in reasons['{"channel":"orders",']
    assert all(d["raw_key"] == "BTC/USD" and isinstance(d["raw_offset"], int) for d in dead)
    later = cluster.read("book.deltas", until=lambda r: any(d["symbol"] == "BTC-USD" and d["seq"] > before + 5 for d in r))
    assert all(d["checksum_ok"] for d in later if d["symbol"] == "BTC-USD" and d["seq"] > before)


def test_web_views(cluster: Cluster) -> None:
    url = f"http://127.0.0.1:{cluster.web}/books/"  # type: ignore[attr-defined]
    listing = wait_until(lambda: (lambda r: r if r and {b["symbol"] for b in r["books"]} == SYMBOLS else None)(
        http_json(url)), 60, "every book listed")
    assert all(b["state"] in ("live", "stale") and b["seq"] > 0 for b in listing["books"])
    book = http_json(book_url(cluster, "PEPE-USD", depth=5))
    assert len(book["bids"]) == 5 and len(book["asks"]) == 5 and isinstance(book["checksum"], int)
    assert all(len(p.split(".")[1]) == 10 for p, _ in book["bids"]), "PEPE prices keep their 10 decimals"
    default = http_json(f"http://127.0.0.1:{cluster.web}/books/BTC-USD/")  # type: ignore[attr-defined]
    assert len(default["bids"]) == 10
    missing = http_json(book_url(cluster, "XBT-EUR"))
    assert missing["status"] == 404 and "unknown symbol XBT-EUR" in missing["error"]
    bad = http_json(f"http://127.0.0.1:{cluster.web}/books/BTC-USD/?depth=-3")  # type: ignore[attr-defined]
    assert bad["status"] == 400 and "depth" in bad["error"]


def test_metrics_and_grid_snapshots_flow(cluster: Cluster) -> None:
    snaps = cluster.read("book.snapshots", until=lambda r: sum(s["reason"] == "grid" for s in r) >= 3)
    grid = [s for s in snaps if s["reason"] == "grid"]
    assert all(s["ts_grid_ns"] % 1_000_000_000 == 0 and len(s["bids"]) <= 10 for s in grid)
    assert {s["reason"] for s in snaps} >= {"exchange", "grid"}
    metrics = cluster.read("metrics", until=lambda r: any(m.get("spread") for m in r))
    book_metrics = [m for m in metrics if m["metric"] == "book" and m["spread"]]
    assert all(Decimal(m["spread"]) > 0 for m in book_metrics)


def test_the_book_agent_takes_whole_fetched_batches(cluster: Cluster) -> None:
    """The consumer hands each fetch's raw records to the book agent whole (app/batching.py), not one
    event at a time through Faust's stream: once the paused exchange's last frames are processed, every
    record the worker processed came that way."""
    def counters() -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{cluster.web}/metrics", timeout=5) as response:  # type: ignore[attr-defined]
            lines = response.read().decode().splitlines()
        return {name: float(value) for name, _, value in (line.partition(" ") for line in lines)
                if name in ("krakenflow_drained_records_total", "krakenflow_worker_events_total")}

    assert cluster.sim("pause", on=1)["ok"]
    try:
        settled = wait_until(lambda: (c := counters()) and c["krakenflow_worker_events_total"] > 0 and
                             c["krakenflow_drained_records_total"] == c["krakenflow_worker_events_total"] and c,
                             30, "every processed record to have come in a drained batch")
        assert settled["krakenflow_drained_records_total"] > 100
    finally:
        cluster.sim("pause", on=0)


def test_tail_follows_a_topic_filtered_by_symbol(cluster: Cluster) -> None:
    import subprocess

    from tests.cluster import BIN
    from tests.processes import ROOT

    result = subprocess.run([str(BIN / "krakenflow"), "tail", "book.deltas", "--symbol", "PEPE/USD",
                             "--from-beginning", "--count", "5"], cwd=ROOT, env=cluster.env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5 and all(line.startswith("PEPE-USD") for line in lines)
    assert "SNAPSHOT" in lines[0] and "checksum ok" in lines[0]
    events = subprocess.run([str(BIN / "krakenflow"), "tail", cluster.topic("book.events"), "--from-beginning", "--count",
                             "1"], cwd=ROOT, env=cluster.env, capture_output=True, text=True, timeout=60)
    assert " -> live: " in events.stdout

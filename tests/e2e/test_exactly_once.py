"""Exactly-once on Apache Kafka: workers SIGKILLed under load, some with their RocksDB deleted; a
``read_committed`` consumer of the deltas sees every ``(symbol, epoch, seq)`` once, with no gap, and
its own books, rebuilt from them alone, verify every checksum and equal the exchange's."""

from __future__ import annotations

import random
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from models.book import L2Book
from models.symbols import normalize
from tests.brokers import DEFAULT, KAFKA
from tests.cluster import Cluster, http_json, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(DEFAULT != KAFKA, reason="exactly-once needs Apache Kafka")]

PAIRS = ["BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "DOGE/USD", "ADA/USD"]
SYMBOLS = {normalize(p) for p in PAIRS}
DEPTH = 25
KILLS = 20


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, PAIRS, depth=DEPTH, sim_args=("--pair-rate", "10", "--seed", "3"))
    try:
        c.start_ingest()
        yield c
    finally:
        c.close()


def seq_now(port: int) -> dict[str, int]:
    listing = http_json(f"http://127.0.0.1:{port}/books/") or {"books": []}
    return {b["symbol"]: b["seq"] for b in listing["books"]}


def rebuild(deltas: list[dict[str, Any]]) -> tuple[dict[str, L2Book], list[tuple[str, int]]]:
    """Books from the deltas alone, as a downstream consumer builds them; and the (symbol, seq) whose
    checksum the rebuilt book does not give."""
    books: dict[str, L2Book] = {}
    wrong: list[tuple[str, int]] = []
    for d in sorted(deltas, key=lambda d: (d["symbol"], d["seq"])):
        book = books.get(d["symbol"])
        if d["is_snapshot"] or book is None:
            book = books[d["symbol"]] = L2Book(d["exchange_symbol"], d["depth"])
            book.apply_snapshot(d["bids"], d["asks"])
        else:
            book.apply_update(d["bids"], d["asks"])
        if book.checksum() != d["checksum"]:
            wrong.append((d["symbol"], d["seq"]))
    return books, wrong


def test_twenty_worker_kills_leave_every_delta_exactly_once(cluster: Cluster) -> None:
    ports = {name: cluster.start_worker(name) for name in ("a", "b")}
    wait_until(lambda: set(seq_now(ports["a"])) == SYMBOLS, 90, "books live on two workers")
    rng = random.Random(20)
    for kill in range(KILLS):
        victim = rng.choice(sorted(ports))
        survivor = next(n for n in ports if n != victim)
        before = seq_now(ports[survivor])
        cluster.stop(victim, signal.SIGKILL)
        cluster.start_worker(victim, web_port=ports[victim], fresh=kill % 3 == 2)  # a third lose RocksDB
        wait_until(lambda: (lambda now: set(now) == SYMBOLS and all(now[s] > before.get(s, 0) + 2 for s in now))(
            seq_now(ports[survivor])), 120, f"every book to move on after kill {kill + 1}")

    assert cluster.sim("pause", on=1)["ok"]
    exchange = {normalize(p): cluster.sim("book", symbol=p, depth=DEPTH) for p in PAIRS}

    def settled() -> tuple[list[dict[str, Any]], dict[str, L2Book], list[tuple[str, int]]] | None:
        deltas = cluster.read("book.deltas")  # read_committed
        books, wrong = rebuild(deltas)
        same = all(s in books and ([list(x) for x in books[s].levels("bids")], [list(x) for x in books[s].levels(
            "asks")]) == (exchange[s]["bids"], exchange[s]["asks"]) for s in SYMBOLS)
        return (deltas, books, wrong) if same else None

    deltas, books, wrong = wait_until(settled, 60, "the consumer's books to equal the exchange's")
    seen = Counter((d["symbol"], d["epoch"], d["seq"]) for d in deltas)
    assert [key for key, n in seen.items() if n > 1] == [], "a delta was delivered twice"
    for symbol in SYMBOLS:
        seqs = sorted(seq for (s, _, seq) in seen if s == symbol)
        assert seqs == list(range(1, len(seqs) + 1)), f"{symbol}: a seq is missing"
    assert [(d["symbol"], d["seq"]) for d in deltas if d["checksum_ok"] is False] == [], "a checksum failed"
    assert wrong == [], "a delta's checksum is not the one of the book the stream gives"

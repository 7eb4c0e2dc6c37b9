"""What a ``read_committed`` consumer of ``kraken.book.deltas`` must see after any fault: every
``(symbol, epoch, seq)`` once, no seq missing, and books rebuilt from the deltas alone that verify every
checksum and equal the exchange's. Shared by the worker-kill and worker-pause tests."""

from __future__ import annotations

from collections import Counter
from typing import Any

from models.book import L2Book
from models.symbols import normalize
from tests.cluster import Cluster, http_json, wait_until


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


def assert_exactly_once(cluster: Cluster, pairs: list[str], depth: int) -> None:
    """Pause the exchange, wait for the consumer's books to equal it, then check the delta stream."""
    symbols = {normalize(p) for p in pairs}
    assert cluster.sim("pause", on=1)["ok"]
    exchange = {normalize(p): cluster.sim("book", symbol=p, depth=depth) for p in pairs}

    def settled() -> tuple[list[dict[str, Any]], dict[str, L2Book], list[tuple[str, int]]] | None:
        deltas = cluster.read("book.deltas")  # read_committed
        books, wrong = rebuild(deltas)
        same = all(s in books and ([list(x) for x in books[s].levels("bids")], [list(x) for x in books[s].levels(
            "asks")]) == (exchange[s]["bids"], exchange[s]["asks"]) for s in symbols)
        return (deltas, books, wrong) if same else None

    deltas, books, wrong = wait_until(settled, 60, "the consumer's books to equal the exchange's")
    seen = Counter((d["symbol"], d["epoch"], d["seq"]) for d in deltas)
    assert [key for key, n in seen.items() if n > 1] == [], "a delta was delivered twice"
    by_seq = Counter((d["symbol"], d["seq"]) for d in deltas)
    assert [key for key, n in by_seq.items() if n > 1] == [], "a seq was published twice (in two epochs)"
    for symbol in symbols:
        seqs = sorted(seq for (s, _, seq) in seen if s == symbol)
        assert seqs == list(range(1, len(seqs) + 1)), f"{symbol}: a seq is missing"
    assert [(d["symbol"], d["seq"]) for d in deltas if d["checksum_ok"] is False] == [], "a checksum failed"
    assert wrong == [], "a delta's checksum is not the one of the book the stream gives"
    assert_the_low_latency_read_is_the_same(cluster, deltas)


#: stamped when a delta is (re)computed: a redo after an abort or a crash stamps it anew
EMIT_STAMP = "ts_emit_ns"


def assert_the_low_latency_read_is_the_same(cluster: Cluster, committed: list[dict[str, Any]]) -> None:
    """A ``read_uncommitted`` reader that drops repeats by ``(symbol, epoch, seq)`` (``krakenflow.client``
    does) gets the same deltas as the ``read_committed`` one: aborted transactions' records are redone
    identically, so what it saw early is what committed; nothing is missing and nothing extra."""
    def content(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k != EMIT_STAMP and not k.startswith("_")}

    early: dict[tuple[str, int, int], dict[str, Any]] = {}
    for d in cluster.read("book.deltas", until=None, isolation="read_uncommitted"):
        early.setdefault((d["symbol"], d["epoch"], d["seq"]), content(d))
    final = {(d["symbol"], d["epoch"], d["seq"]): content(d) for d in committed}
    missed = sorted(final.keys() - early.keys())
    assert missed == [], f"read_uncommitted missed committed deltas: {missed[:5]}"
    extra = sorted(early.keys() - final.keys())
    assert extra == [], "read_uncommitted saw deltas that never committed: " + "; ".join(
        f"{key}: {early[key]} (committed under that seq: "
        f"{[v for k, v in final.items() if (k[0], k[2]) == (key[0], key[2])]})" for key in extra[:3])
    differ = [key for key in final if early[key] != final[key]]
    assert differ == [], "a redo differs from what read_uncommitted saw first: " + "; ".join(
        f"{key}: first {early[key]}, committed {final[key]}" for key in differ[:3])

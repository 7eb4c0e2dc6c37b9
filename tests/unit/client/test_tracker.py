"""The client library's sequencing on real captures: a client joining anywhere, losing or repeating
records, ends with the worker's books (property tests over the real book engine's output)."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from krakenflow.client import BookTracker, LocalBook
from models.kraken.wire import frame_key
from models.processor import BookProcessor, ProcessorSettings, RawRecord
from models.records import as_dict
from tests.conftest import capture_files

pytestmark = pytest.mark.unit

View = dict[str, Any]


@cache
def worker_run(index: int) -> tuple[list[dict[str, Any]], dict[tuple[str, int, int], View], dict[str, View]]:
    """One capture through the worker's engine: its deltas, the worker's book (a web view's answer) after
    each delta, and its final books."""
    path = capture_files()[index]
    processor = BookProcessor(ProcessorSettings())
    deltas: list[dict[str, Any]] = []
    views: dict[tuple[str, int, int], View] = {}
    for offset, line in enumerate(ln for ln in path.read_text().splitlines() if ln.strip()):
        out: list[Any] = []
        key = frame_key(line)
        processor.process_into(RawRecord(line.encode(), key.encode() if key else None, 0, offset, 1), out)
        for o in out:
            if o.topic != "book.deltas":
                continue
            d = as_dict(o.record)
            deltas.append(d)
            pair = processor.pairs[d["exchange_symbol"]]
            assert pair.book is not None
            views[(d["symbol"], d["epoch"], d["seq"])] = {
                "epoch": d["epoch"], "seq": d["seq"], "checksum": pair.book.checksum(), "state": "live",
                "bids": pair.book.levels("bids"), "asks": pair.book.levels("asks")}
    final = {p.norm: views[(p.norm, p.epoch, p.seq)] for p in processor.pairs.values() if p.book is not None}
    return deltas, views, final


def captures_with_deltas() -> list[int]:
    return [i for i in range(len(capture_files())) if len(worker_run(i)[0]) >= 20]


def assert_equal_to_worker(tracker: BookTracker, final: dict[str, View]) -> None:
    for symbol, view in final.items():
        book = tracker.book(symbol)
        assert tracker.state(symbol) == "live", symbol
        assert (book.epoch, book.seq) == (view["epoch"], view["seq"])
        assert book.bids == view["bids"] and book.asks == view["asks"]
        assert book.checksum_ok and book.computed_checksum() == view["checksum"]


def test_a_client_from_the_start_needs_no_recovery_and_verifies_every_delta() -> None:
    for index in captures_with_deltas():
        deltas, _, final = worker_run(index)
        tracker = BookTracker(sorted(final))
        for d in deltas:
            for update in tracker.feed(d):
                assert update.state == "live" and update.book.checksum_ok
        assert_equal_to_worker(tracker, final)
        assert sum(tracker.stats(s).gaps + tracker.stats(s).recoveries for s in final) == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_joining_anywhere_losing_and_repeating_records_ends_with_the_workers_books(data: st.DataObject) -> None:
    index = data.draw(st.sampled_from(captures_with_deltas()))
    deltas, views, final = worker_run(index)
    n = len(deltas)
    join = data.draw(st.integers(0, n - 1), label="join")
    # a symbol's last delta is never lost: nothing after it would show the gap (a quiet market's tail)
    last = {d["symbol"]: i for i, d in enumerate(deltas)}
    losable = [i for i in range(join, n) if i != last[deltas[i]["symbol"]]]
    lost = data.draw(st.sets(st.sampled_from(losable), max_size=max(1, len(losable) // 5)) if losable
                     else st.just(set()), label="lost")
    repeated = data.draw(st.sets(st.integers(join, n - 1), max_size=10), label="repeated")
    lag = data.draw(st.integers(0, 5), label="worker ahead of the client by")
    tracker = BookTracker(sorted(final))
    latest: dict[str, View] = {}  # the worker's book as a web view would answer now
    fed: list[int] = []  # the records the tracker got, in the order it got them

    def feed(index: int) -> None:
        fed.append(index)
        tracker.feed(deltas[index])

    for i in range(join):
        d = deltas[i]
        latest[d["symbol"]] = views[(d["symbol"], d["epoch"], d["seq"])]
    for i in range(join, n):
        for d in deltas[i:min(n, i + lag + 1)]:
            latest[d["symbol"]] = views[(d["symbol"], d["epoch"], d["seq"])]
        if i not in lost:
            feed(i)
        if i in repeated:
            feed(i)
            feed(max(join, i - 3))
        for symbol in sorted(tracker.needs_recovery):
            if symbol in latest and data.draw(st.booleans(), label="answer now"):
                tracker.restore(symbol, latest[symbol])
    for symbol in sorted(tracker.needs_recovery):  # the last answers
        tracker.restore(symbol, final[symbol])
    assert_equal_to_worker(tracker, final)
    if join == 0 and started_book_missed_a_record(deltas, fed):
        assert sum(tracker.stats(s).gaps for s in final) > 0


def started_book_missed_a_record(deltas: list[dict[str, Any]], fed: list[int]) -> bool:
    """Whether a book the tracker got from its symbol's first record on was then given a record with one of
    its symbol's records before it still missing (a record lost, or repeated late only after the next one
    came). A book whose first records were lost started from a view instead, which may cover the loss."""
    first: dict[str, int] = {}
    for i, d in enumerate(deltas):
        first.setdefault(d["symbol"], i)
    newest: dict[str, int] = {}  # per started book: the newest record fed so far
    for index in fed:
        symbol = deltas[index]["symbol"]
        previous = newest.get(symbol)
        if previous is None:
            if index == first[symbol]:
                newest[symbol] = index
            continue
        if index > previous:
            if any(deltas[j]["symbol"] == symbol for j in range(previous + 1, index)):
                return True
            newest[symbol] = index
    return False


def test_a_gap_is_found_and_a_repeat_dropped() -> None:
    deltas, views, final = worker_run(captures_with_deltas()[0])
    symbol = deltas[0]["symbol"]
    mine = [d for d in deltas if d["symbol"] == symbol]
    tracker = BookTracker([symbol])
    tracker.feed(mine[0])
    tracker.feed(mine[1])
    assert tracker.feed(mine[1]) == [] and tracker.stats(symbol).duplicates == 1
    assert tracker.feed(mine[3]) == [] and tracker.stats(symbol).gaps == 1  # mine[2] lost
    assert tracker.state(symbol) == "recovering" and symbol in tracker.needs_recovery
    tracker.feed(mine[4])
    updates = tracker.restore(symbol, views[(symbol, mine[2]["epoch"], mine[2]["seq"])])
    assert [u.record["seq"] if u.record else None for u in updates] == [None, mine[3]["seq"], mine[4]["seq"]]
    assert tracker.state(symbol) == "live" and symbol not in tracker.needs_recovery


def test_a_checksum_mismatch_invalidates_the_book_until_restored() -> None:
    deltas, views, _ = worker_run(captures_with_deltas()[0])
    symbol = deltas[0]["symbol"]
    mine = [d for d in deltas if d["symbol"] == symbol]
    tracker = BookTracker([symbol])
    tracker.feed(mine[0])
    [update] = tracker.feed({**mine[1], "checksum": mine[1]["checksum"] ^ 1})
    assert update.state == "invalid" and tracker.stats(symbol).checksum_failures == 1
    assert symbol in tracker.needs_recovery
    tracker.feed(mine[2])  # kept, not applied to a wrong book
    tracker.restore(symbol, views[(symbol, mine[1]["epoch"], mine[1]["seq"])])
    assert tracker.state(symbol) == "live" and tracker.book(symbol).seq == mine[2]["seq"]


def test_local_book_reads_like_a_ladder() -> None:
    book = LocalBook("BTC-USD")
    book.replace([["100.0", "1"], ["99.5", "2"], ["101.0", "0"]], [["100.5", "3"], ["102.0", "1"]])
    book.apply([["99.5", "0"], ["99.9", "4"]], [["100.2", "1"]])
    assert book.bids[:10] == [("100.0", "1"), ("99.9", "4")]
    assert book.best_bid == ("100.0", "1") and book.best_ask == ("100.2", "1")
    assert str(book.spread) == "0.2" and str(book.mid) == "100.1"
    assert book.top(1) == ([("100.0", "1")], [("100.2", "1")])

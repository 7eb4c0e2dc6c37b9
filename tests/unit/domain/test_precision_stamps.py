"""Precision stamps: a book is formatted by its own partition's frames, whatever order a worker happens to
read the instrument frames' partition in (so an exactly-once redo writes what the aborted attempt wrote)."""

from __future__ import annotations

import pytest

from ingest.raw import PrecisionStamps, raw_record, read_raw
from models.book import BookDelta
from models.session import BookSession, PairState, RawRecord, precision_stamp, stamped_precision
from sim import render
from sim.exchange import PairMarket
from sim.pairs import PairSpec, catalogue

pytestmark = pytest.mark.unit

DEPTH = 10
BOOKS, CONN = 3, 1  # raw partitions: the pairs' and the connection's (instrument frames)
NOW = 1_700_000_000_000_000_000


class Recording(BookSession):
    def __init__(self) -> None:
        super().__init__()
        self.deltas: list[tuple[str, list[tuple[str, str]], list[tuple[str, str]], bool | None]] = []
        self.rejects: list[str] = []

    def on_delta(self, st: PairState, delta: BookDelta, record: RawRecord) -> None:
        self.deltas.append((st.symbol, delta.bids, delta.asks, delta.checksum_ok))

    def on_reject(self, record: RawRecord, reason: str) -> None:
        self.rejects.append(reason)


class Ingest:
    """Frames as the live ingest writes them (``ingest/raw.py``: key, headers and stamps), per partition."""

    def __init__(self, stamping: bool = True) -> None:
        self.stamps = PrecisionStamps() if stamping else None
        self.partitions: dict[int, list[RawRecord]] = {BOOKS: [], CONN: []}

    def write(self, text: str, key: str | None) -> None:
        stamp = self.stamps.stamp(text, key) if self.stamps is not None else None
        record_key, value, headers = raw_record(text, NOW, "c1", 0, key, 1, stamp)
        partition = CONN if key is None else BOOKS
        records = self.partitions[partition]
        records.append(read_raw(value, record_key, partition, len(records), headers))


def _session(ingest: Ingest, instrument_first: bool) -> Recording:
    """A worker that reads the instrument partition before the books', or after their first records."""
    session = Recording()
    books, conn = ingest.partitions[BOOKS], ingest.partitions[CONN]
    order = conn + books if instrument_first else books[:2] + conn + books[2:]
    for record in order:
        session.process(record)
    return session


def _market(spec: PairSpec, ingest: Ingest, updates: int, specs: list[PairSpec] | None = None) -> None:
    market = PairMarket(spec, seed=3)
    ingest.write(render.instrument(specs or [spec]), None)
    bids, asks, checksum = market.snapshot(DEPTH)
    ingest.write(render.book(spec.symbol, True, bids, asks, checksum, NOW), spec.symbol)
    for i in range(updates):
        event = market.step((DEPTH,), NOW + i)
        b, a = event.views[DEPTH]
        if b or a:
            ingest.write(render.book(spec.symbol, False, b, a, event.checksum, event.ts_ns), spec.symbol)


def test_stamped_books_do_not_depend_on_when_the_instrument_partition_is_read() -> None:
    spec = catalogue()[1]  # ETH/USD: 2 price decimals, 8 qty decimals; the simulator writes deletes as "0"
    ingest = Ingest()
    _market(spec, ingest, 300)
    early, late = _session(ingest, instrument_first=True), _session(ingest, instrument_first=False)
    assert early.deltas == late.deltas and early.rejects == late.rejects == []
    assert all(ok for *_, ok in early.deltas)
    deletes = [qty for _, bids, asks, _ in early.deltas for _, qty in bids + asks if float(qty) == 0]
    assert deletes and set(deletes) == {"0.00000000"}, "deletes are written at the pair's precision"


def test_unstamped_books_follow_the_instrument_frames_as_read() -> None:
    # frames of a writer that stamps none (an older ingest, a capture): the precision is the one learnt so far
    spec = catalogue()[1]
    ingest = Ingest(stamping=False)
    _market(spec, ingest, 300)
    early, late = _session(ingest, instrument_first=True), _session(ingest, instrument_first=False)
    assert early.deltas != late.deltas


def test_a_stamped_precision_change_rekeys_the_book_at_its_first_frame() -> None:
    spec = catalogue()[1]
    wider = PairSpec(spec.symbol, spec.price_precision + 1, spec.qty_precision, spec.price, spec.qty, spec.activity)
    ingest = Ingest()
    _market(spec, ingest, 50)
    first = len(ingest.partitions[BOOKS])
    ingest.write(render.instrument([wider]), None)  # Kraken's instrument update, then frames at 3 decimals
    market = PairMarket(spec, seed=3)
    bids, asks, checksum = market.snapshot(DEPTH)
    ingest.write(render.book(spec.symbol, False, bids[:1], [], checksum, NOW), spec.symbol)
    early, late = _session(ingest, instrument_first=True), _session(ingest, instrument_first=False)
    assert early.deltas == late.deltas
    assert ingest.partitions[BOOKS][first].stamp == b"3,8"
    assert early.pairs[spec.symbol].book is not None and early.pairs[spec.symbol].book.precision == (3, 8)
    assert early.precisions[spec.symbol] == late.precisions[spec.symbol] == (3, 8), "the instruments table follows"
    prices = [price for price, _ in early.deltas[-1][1]]
    assert prices[0] == bids[0][0] + "0" and all(len(p.split(".")[1]) == 3 for p in prices), \
        "the update is written at the new precision"


def test_a_writer_that_knew_no_precision_yet_leaves_a_new_book_as_sent() -> None:
    spec = catalogue()[1]
    ingest = Ingest()
    market = PairMarket(spec, seed=3)
    bids, asks, checksum = market.snapshot(DEPTH)
    ingest.write(render.book(spec.symbol, True, bids, asks, checksum, NOW), spec.symbol)  # before any instrument
    assert ingest.partitions[BOOKS][0].stamp == b""
    ingest.write(render.instrument([spec]), None)
    early, late = _session(ingest, instrument_first=True), _session(ingest, instrument_first=False)
    assert early.deltas == late.deltas
    # the instrument frame, read after the book, does not re-key a book whose frames are stamped
    assert [s.pairs[spec.symbol].book.precision for s in (early, late) if s.pairs[spec.symbol].book] == [None, None]
    assert early.rejects == late.rejects == []


@pytest.mark.parametrize("header", [b"x", b"2,", b"2,8,1", b"99,8", b"-1,8", b"2" * 40, b"\xff,8"])
def test_a_bad_stamp_is_dead_lettered_and_the_partition_goes_on(header: bytes) -> None:
    ingest = Ingest()
    eth, sol = catalogue()[1:3]
    _market(eth, ingest, 20, [eth, sol])
    _market(sol, ingest, 20, [eth, sol])
    records = ingest.partitions[BOOKS]
    last_eth = max(n for n, r in enumerate(records) if r.key == b"ETH/USD")
    records[last_eth].stamp = header
    session = Recording()
    for record in ingest.partitions[CONN] + records:
        session.process(record)
    assert len(session.rejects) == 1 and "prec header" in session.rejects[0] and "b'2,8'" in session.rejects[0]
    assert session.counters["deadletter"] == 1 and len(session.deltas) == len(records) - 1
    assert all(ok for *_, ok in session.deltas) and session.pairs["SOL/USD"].seq > 1


def test_stamps_round_trip_through_the_raw_headers() -> None:
    assert stamped_precision(precision_stamp((2, 8))) == (2, 8)
    assert stamped_precision(precision_stamp(None)) is None
    stamps = PrecisionStamps()
    assert stamps.stamp('{"channel":"book","type":"update","data":[]}', "ETH/USD") == b""
    specs = catalogue(3)
    stamps.stamp(render.instrument(specs), None)
    assert {s.symbol: stamps.stamp("{}", s.symbol) for s in specs} == {
        s.symbol: f"{s.price_precision},{s.qty_precision}".encode() for s in specs}
    stamps.stamp('{"channel":"instrument","type":"update","data":{"pairs":[{"symbol":1}]}}', None)  # refused
    assert len(stamps.known) == 3
    _, _, headers = raw_record("{}", NOW, "c1", 0, "ETH/USD", None, b"2,8")
    assert read_raw(b"{}", b"ETH/USD", 0, 0, headers).stamp == b"2,8"
    assert read_raw(b"{}", b"ETH/USD", 0, 0, dict(headers)).stamp == b"2,8"  # Faust's event headers
    assert read_raw(b"{}", b"ETH/USD", 0, 0, raw_record("{}", NOW, "c1", 0, None)[2]).stamp is None


def test_an_instrument_frame_without_a_stamp_cannot_change_a_stamped_book() -> None:
    # a forger that copies the live ingest's lock_gen but not its stamp (or an older ingest): refused, once per
    # frame, and the book goes on at the stamped precision without a resync
    spec = catalogue()[1]
    ingest = Ingest()
    _market(spec, ingest, 40)
    wrong = PairSpec(spec.symbol, 4, 8, spec.price, spec.qty, spec.activity)
    forged = raw_record(render.instrument([wrong]), NOW, "forger", 0, None, 1)  # no prec header
    records = ingest.partitions[BOOKS]
    session = Recording()
    for record in ingest.partitions[CONN] + records[:10]:
        session.process(record)
    session.process(read_raw(forged[1], forged[0], CONN, 1, forged[2]))
    for record in records[10:]:
        session.process(record)
    assert len(session.rejects) == 1 and "contradicts (2, 8), which the live ingest stamps" in session.rejects[0]
    assert session.counters["instrument_conflicts"] == 1 and session.precisions[spec.symbol] == (2, 8)
    assert all(ok for *_, ok in session.deltas) and len(session.deltas) == len(records)
    assert session.pairs[spec.symbol].state == "live" and session.pairs[spec.symbol].resyncs == 0

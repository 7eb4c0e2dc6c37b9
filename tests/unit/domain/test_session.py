"""The book session (the one engine behind the worker, verify, the bench and the test client)."""

from __future__ import annotations

import pytest

from models.book import BookDelta
from models.kraken.frames import BookData, BookFrame, InstrumentFrame, PairInfo, parse_frame
from models.session import BookSession, PairState, RawRecord

pytestmark = pytest.mark.unit


class Recording(BookSession):
    def __init__(self) -> None:
        super().__init__()
        self.deltas: list[BookDelta] = []
        self.rejects: list[str] = []
        self.states: list[tuple[str, str]] = []
        self.offset = 0

    def on_delta(self, st: PairState, delta: BookDelta, record: RawRecord) -> None:
        self.deltas.append(delta)

    def on_reject(self, record: RawRecord, reason: str) -> None:
        self.rejects.append(reason)

    def on_state(self, st: PairState, state: str, previous: str, reason: str, record: RawRecord | None) -> None:
        self.states.append((st.symbol, state))

    def feed(self, frame: object) -> None:
        self.offset += 1
        self.on_frame(RawRecord(b"", None, 0, self.offset), frame)  # type: ignore[arg-type]


def _session() -> Recording:
    session = Recording()
    session.feed(InstrumentFrame(True, [PairInfo("BTC/USD", "BTC", "USD", "online", 1, 8)]))
    return session


def _frame(is_snapshot: bool, *books: BookData) -> BookFrame:
    return BookFrame(is_snapshot, list(books))


def test_update_before_snapshot_is_rejected_and_resyncs() -> None:
    session = _session()
    session.feed(_frame(False, BookData("BTC/USD", [("1.0", "1")], [], None, None)))
    assert session.deltas == [] and "before any snapshot" in session.rejects[0]
    assert session.counters["resyncs"] == 1


def test_bad_token_in_update_is_rejected_and_invalidates_that_pair() -> None:
    session = _session()
    session.feed(_frame(True, BookData("BTC/USD", [("10.0", "1")], [("10.1", "1")], None, None)))
    session.feed(_frame(False, BookData("BTC/USD", [("10.05", "1")], [], None, None)))
    assert "precision is stale" in session.rejects[0]
    assert ("BTC/USD", "invalidated") in session.states
    session.feed(_frame(True, BookData("BTC/USD", [("9.9", "2")], [("10.1", "1")], None, None)))
    assert session.deltas[-1].bids == [("9.9", "2.00000000")] and session.states[-1] == ("BTC/USD", "restored")


def test_single_and_multi_pair_updates_agree() -> None:
    snap = BookData("BTC/USD", [("10.0", "1")], [("10.1", "1")], None, None)
    other = BookData("ETH/USD", [("5.0", "1")], [("5.1", "1")], None, None)
    update = BookData("BTC/USD", [("10.0", "0"), ("9.8", "3")], [("10.2", "1")], None, None)
    one, two = _session(), _session()
    one.feed(_frame(True, snap))
    two.feed(_frame(True, snap, other))
    one.feed(_frame(False, update))
    two.feed(_frame(False, update, other))
    fast, general = one.deltas[-1], two.deltas[-2]
    assert fast == general
    assert fast.bids == [("10.0", "0.00000000"), ("9.8", "3.00000000")] and not fast.crossed


def test_instrument_update_mid_stream_rekeys_live_book_and_acks_set_depth() -> None:
    session = Recording()
    frames = [
        '{"method":"subscribe","result":{"channel":"book","depth":25,"snapshot":true,"symbol":"MINA/GBP"},"success":true}',
        '{"channel":"book","type":"snapshot","data":[{"symbol":"MINA/GBP","bids":[{"price":0.0280,"qty":10.5}],'
        '"asks":[{"price":0.0290,"qty":1}],"checksum":0}]}',
        '{"channel":"instrument","type":"update","data":{"assets":[],"pairs":[{"symbol":"MINA/GBP","base":"MINA",'
        '"quote":"GBP","status":"online","price_precision":5,"qty_precision":8}]}}',
    ]
    for raw in frames:
        session.feed(parse_frame(raw))
    book = session.pairs["MINA/GBP"].book
    assert book is not None and book.depth == 25
    assert book.precision == (5, 8)
    assert book.levels("bids") == [("0.02800", "10.50000000")]


def test_a_record_at_or_below_the_last_applied_offset_is_a_duplicate() -> None:
    session = _session()
    snap = _frame(True, BookData("BTC/USD", [("10.0", "1")], [("10.1", "1")], None, None))
    session.on_frame(RawRecord(b"", None, 3, 7), snap)
    session.on_frame(RawRecord(b"", None, 3, 7), snap)
    assert len(session.deltas) == 1 and session.counters["duplicates"] == 1


def test_frames_of_an_older_ingest_lock_generation_are_refused() -> None:
    session = _session()
    snap = b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":10.0,"qty":1}],' \
           b'"asks":[{"price":10.1,"qty":1}],"checksum":0}]}'
    update = b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":9.9,"qty":2}],' \
             b'"asks":[],"checksum":0}]}'
    session.process(RawRecord(snap, b"BTC/USD", 1, 10, None, lock_gen=3))
    session.process(RawRecord(snap, b"BTC/USD", 1, 11, None, lock_gen=4))  # the lock moved: a new ingest
    session.process(RawRecord(update, b"BTC/USD", 1, 12, None, lock_gen=3))  # the old one, resumed
    assert session.counters["fenced"] == 1 and "fenced: written by an ingest of lock generation 3" in session.rejects[0]
    assert len(session.deltas) == 2
    session.process(RawRecord(update, b"BTC/USD", 2, 5, None, lock_gen=3))  # partitions are fenced apart
    session.process(RawRecord(update, b"BTC/USD", 1, 13, None))  # a replay carries no generation
    assert session.counters["fenced"] == 1

"""The book store's codec and restore on a real RocksDB partition (no broker: records are written the
way a flush writes them locally)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.factory import create_app
from app.settings import Settings
from models.kraken.wire import frame_key
from models.processor import BookProcessor, Output, ProcessorSettings
from models.records import BookDeltaRecord
from models.session import RawRecord
from tables.books import BookStore
from tables.codec import CodecError, decode_meta, decode_page, meta_key, page_key
from tables.partitiondb import PartitionDB
from tests.conftest import capture_files

pytestmark = pytest.mark.unit


@pytest.fixture
def table(tmp_path: Path) -> Any:
    app = create_app(Settings(app_id="kf-store-test", data_dir=tmp_path))
    app.conf.datadir = str(tmp_path / "worker")
    return app.parts.tables.books


def feed(path_prefix: str) -> tuple[BookProcessor, list[Output]]:
    path = next(p for p in capture_files() if p.name.startswith(path_prefix))
    processor, out = BookProcessor(ProcessorSettings()), []
    for offset, line in enumerate(path.read_text().splitlines()):
        key = frame_key(line)
        processor.process_into(RawRecord(line.encode(), key.encode() if key else None, 0, offset, 1), out)
    return processor, out


def write(store: BookStore, processor: BookProcessor, out: list[Output]) -> None:
    deltas = [o.record for o in out if isinstance(o.record, BookDeltaRecord)]
    for st in processor.pairs.values():
        records = store._records(st, [d for d in deltas if d.exchange_symbol == st.symbol])
        PartitionDB(store.table, 0).write(records)


def test_flushed_state_restores_to_the_same_book(table: Any) -> None:
    processor, out = feed("depthcharge_btcusd_d100")
    store = BookStore(table, changelog_topic=lambda: "unused")
    write(store, processor, out)
    st = processor.pairs["BTC/USD"]
    restored = BookStore(table, changelog_topic=lambda: "unused").restore("BTC/USD", 0)
    assert restored is not None and restored.book is not None and st.book is not None
    assert restored.book.levels("bids") == st.book.levels("bids") and restored.book.levels("asks") == st.book.levels("asks")
    assert (restored.seq, restored.epoch, restored.last_offset, restored.state) == (st.seq, st.epoch, st.last_offset, "live")


@pytest.mark.parametrize("prefix", ["depthcharge_btcusd_d10", "depthcharge_btcusd_d100"])
def test_every_flush_lists_the_pages_the_table_holds(table: Any, prefix: str) -> None:
    """A flush after every frame: each meta record lists exactly the pair's stored pages, also after the
    set of pages changed (the list is kept between flushes and made again only then)."""
    path = next(p for p in capture_files() if p.name.startswith(prefix))
    processor = BookProcessor(ProcessorSettings())
    store = BookStore(table, changelog_topic=lambda: "unused")
    db = PartitionDB(table, 0)
    sets: set[frozenset[tuple[int, int]]] = set()
    for offset, line in enumerate(path.read_text().splitlines()):
        out: list[Output] = []
        processor.process_into(RawRecord(line.encode(), b"BTC/USD", 0, offset, 1), out)
        write(store, processor, out)
        value = db.get(meta_key("BTC/USD"))
        if value is None:
            continue
        known = store.pages["BTC/USD"].known
        assert decode_meta(value).pages == [list(p) for p in sorted(known)]
        assert all(db.get(page_key("BTC/USD", side, page)) is not None for side, page in known)
        sets.add(frozenset(known))
    assert len(sets) > 1  # the set of pages did change between flushes


def test_a_corrupt_meta_record_makes_the_pair_untrusted_not_a_crash(table: Any) -> None:
    PartitionDB(table, 0).write([(meta_key("BTC/USD"), b'{"v":1,"symbol":"BTC/US')])
    store = BookStore(table, changelog_topic=lambda: "unused")
    st = store.restore("BTC/USD", 0)
    assert st is not None and st.book is None and st.state == "invalidated"
    # the processor then discards updates and keeps asking for a fresh snapshot, frame after frame
    processor = BookProcessor(ProcessorSettings(), restore=lambda s: store.restore(s, 0))
    out: list[Output] = []
    update = (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":1.0,"qty":1.0}],'
              b'"asks":[],"checksum":1}]}')
    processor.process_into(RawRecord(update, b"BTC/USD", 0, 5), out)
    processor.tick(out)
    assert [o.topic for o in out] == ["control", "book.events"]
    assert processor.counters["deadletter"] == 0 and processor.counters["discarded"] == 1


def test_a_page_newer_than_its_meta_is_untrusted(table: Any) -> None:
    processor, out = feed("depthcharge_btcusd_d25")
    store = BookStore(table, changelog_topic=lambda: "unused")
    write(store, processor, out)
    db = PartitionDB(table, 0)
    meta = decode_meta(db.get(meta_key("BTC/USD")) or b"")
    side, page = meta.pages[0]
    generation, levels = decode_page(db.get(page_key("BTC/USD", side, page)) or b"")
    db.write([(page_key("BTC/USD", side, page), b'{"g":%d,"l":{}}' % (generation + 1))])
    st = BookStore(table, changelog_topic=lambda: "unused").restore("BTC/USD", 0)
    assert st is not None and st.book is None and st.state == "invalidated" and levels


@pytest.mark.parametrize("value", [b"", b"[]", b'{"v":0}', b'{"v":1,"symbol":"x"}', b"\xff\xfe"])
def test_meta_records_that_do_not_decode_raise_codec_error(value: bytes) -> None:
    with pytest.raises(CodecError):
        decode_meta(value)


@pytest.mark.parametrize("value", [b"{}", b'{"g":"1","l":{}}', b'{"g":1,"l":{"1":2}}', b"nope"])
def test_page_records_that_do_not_decode_raise_codec_error(value: bytes) -> None:
    with pytest.raises(CodecError):
        decode_page(value)


def test_watermark_keeps_the_lock_generation() -> None:
    from tables.codec import decode_watermark, encode_watermark

    assert decode_watermark(encode_watermark(1234, 7)) == (1234, 7)
    assert decode_watermark(encode_watermark(1234, None)) == (1234, None)
    assert decode_watermark(b"99") == (99, None)  # as written before generations
    with pytest.raises(CodecError):
        decode_watermark(b"x:1")


def test_a_depth_acked_before_the_first_book_frame_is_stored(table: Any) -> None:
    # the ack of a depth-25 subscription is the pair's only frame before a restart (a stop right after it)
    ack = (b'{"method":"subscribe","result":{"channel":"book","depth":25,"snapshot":true,"symbol":"PEPE/USD"},'
           b'"success":true,"time_in":"2026-12-02T01:30:40.672494Z","time_out":"2026-12-02T01:30:40.706746Z"}')
    processor, out = BookProcessor(ProcessorSettings()), []  # type: ignore[var-annotated]
    processor.process_into(RawRecord(ack, b"PEPE/USD", 5, 2, 1), out)
    store = BookStore(table, changelog_topic=lambda: "unused")
    changes = store.changes(processor.pairs.values(), [], {5: 2})
    store.apply(changes, {5: None})
    restored = BookStore(table, changelog_topic=lambda: "unused").restore("PEPE/USD", 5)
    assert restored is not None and restored.depth == 25, "the pair would restart at the default depth"



def test_a_book_re_keyed_by_a_forged_instrument_keeps_its_verified_precision_across_a_restore(table: Any) -> None:
    """An instrument frame (with the live ingest's lock generation) re-keys a live book at a forged
    precision before any checksum could object, and the worker restarts: the restored book still knows
    the precision it verified at, so the next update's failed checksum exposes the forgery (the verified
    precision is kept) and the fresh snapshot verifies: one resync, not a loop at the forged precision."""
    path = next(p for p in capture_files() if p.name.startswith("depthcharge_btcusd_d25"))
    lines = path.read_text().splitlines()
    first_update = next(n for n, line in enumerate(lines) if line.startswith('{"channel":"book","type":"update"'))
    snapshot = next(line for line in lines if line.startswith('{"channel":"book","type":"snapshot"'))
    processor, out = BookProcessor(ProcessorSettings()), []
    for offset, line in enumerate(lines[:first_update]):
        processor.process_into(RawRecord(line.encode(), b"BTC/USD", 0, offset, 1), out)
    st = processor.pairs["BTC/USD"]
    assert st.book is not None and st.state == "live" and st.book.precision is not None
    verified = st.book.precision
    forged = (verified[0] + 2, verified[1])
    instrument = ('{"channel":"instrument","type":"update","data":{"assets":[],"pairs":[{"symbol":"BTC/USD",'
                  f'"base":"BTC","quote":"USD","status":"online","price_precision":{forged[0]},'
                  f'"qty_precision":{forged[1]}}}]}}}}')
    processor.process_into(RawRecord(instrument.encode(), b"conn:0", 0, first_update, 1), out)
    assert st.book.precision == forged
    store = BookStore(table, changelog_topic=lambda: "unused")
    write(store, processor, out)

    # the restart: the pair comes back from the table, the instruments table holds the forged precision
    again = BookProcessor(ProcessorSettings(), precision_of=lambda s: forged, restore=lambda s: store.restore(s, 0))
    out = []
    again.process_into(RawRecord(lines[first_update].encode(), b"BTC/USD", 0, first_update + 1, 1), out)
    assert again.pairs["BTC/USD"].state == "resyncing"
    assert again.precisions.get("BTC/USD") == verified, "the forged precision was exposed and dropped"
    again.process_into(RawRecord(snapshot.encode(), b"BTC/USD", 0, first_update + 2, 1), out)  # the fresh snapshot
    assert again.pairs["BTC/USD"].state == "live"



def test_a_book_verified_before_its_precision_was_known_exposes_a_forged_first_precision(table: Any) -> None:
    """The race the hostile e2e test met: the pair's snapshot arrived before any instrument frame, so its
    book verified at the decimals as sent; the worker then restarted, and a forged instrument (with the
    live ingest's lock generation) brought the pair's first precision. The fresh snapshot fails at it and
    verifies as sent: the book stays as sent, and the same precision is refused when offered again (before,
    every fresh snapshot was built at the forged precision: a resync loop)."""
    path = next(p for p in capture_files() if p.name.startswith("depthcharge_btcusd_d25"))
    snapshot = next(line for line in path.read_text().splitlines() if line.startswith('{"channel":"book"'))
    processor, out = BookProcessor(ProcessorSettings()), []  # no instrument frame: no precision
    processor.process_into(RawRecord(snapshot.encode(), b"BTC/USD", 0, 0, 1), out)
    st = processor.pairs["BTC/USD"]
    assert st.state == "live" and st.book is not None and st.book.precision is None
    store = BookStore(table, changelog_topic=lambda: "unused")
    write(store, processor, out)

    instrument = (b'{"channel":"instrument","type":"update","data":{"assets":[],"pairs":[{"symbol":"BTC/USD",'
                  b'"base":"BTC","quote":"USD","status":"online","price_precision":3,"qty_precision":8}]}}')
    again = BookProcessor(ProcessorSettings(), restore=lambda s: store.restore(s, 0))
    out = []
    again.process_into(RawRecord(instrument, b"conn:0", 0, 1, 1), out)  # the pair is restored on its next frame
    again.process_into(RawRecord(snapshot.encode(), b"BTC/USD", 0, 2, 1), out)  # the fresh snapshot
    restored = again.pairs["BTC/USD"]
    assert restored.state == "live" and restored.book is not None and restored.book.precision is None
    again.process_into(RawRecord(instrument, b"conn:0", 0, 3, 1), out)
    dead = [o.record.reason for o in out if o.topic == "deadletter"]
    assert len(dead) == 1 and dead[0].startswith("suspect instrument: "), dead
    assert "invalidated" not in [o.record.state for o in out if o.topic == "book.events"]

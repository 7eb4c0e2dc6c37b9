"""The pure book processor on real captures: deltas, events, duplicates, dead letters."""

from __future__ import annotations

import pytest

from krakenflow.client import BookTracker
from models.book import L2Book
from models.kraken.wire import frame_key
from models.processor import BookProcessor, Output, ProcessorSettings, RawRecord
from models.records import as_dict
from tests.conftest import capture_files

pytestmark = pytest.mark.unit


def records(lines: list[str], partition: int = 0) -> list[RawRecord]:
    out = []
    for offset, line in enumerate(lines):
        key = frame_key(line)
        out.append(RawRecord(line.encode(), key.encode() if key else None, partition, offset, 1))
    return out


def run(processor: BookProcessor, recs: list[RawRecord]) -> list[Output]:
    out: list[Output] = []
    for rec in recs:
        processor.process_into(rec, out)
    return out


def test_captures_give_one_verified_delta_per_book_message_and_deltas_rebuild_books() -> None:
    total = 0
    for path in capture_files():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        processor = BookProcessor(ProcessorSettings())
        out = run(processor, records(lines))
        deltas = [as_dict(o.record) for o in out if o.topic == "book.deltas"]
        assert all(d["checksum_ok"] for d in deltas), path.name
        assert not [o for o in out if o.topic in ("deadletter", "control")], path.name
        total += len(deltas)
        tracker = BookTracker(sorted({d["symbol"] for d in deltas}))  # the client library's own rules
        for d in deltas:
            tracker.feed(d)
        for st in processor.pairs.values():
            assert st.book is not None
            assert tracker.state(st.norm) == "live" and tracker.book(st.norm).checksum_ok
            assert tracker.book(st.norm).bids == st.book.levels("bids")
            assert tracker.book(st.norm).asks == st.book.levels("asks")
        seqs = [d["seq"] for d in deltas if d["symbol"] == "BTC-USD"]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert total == 767


def test_replayed_records_are_duplicates_and_change_nothing() -> None:
    path = next(p for p in capture_files() if p.name.startswith("depthcharge_btcusd_d25"))
    recs = records(path.read_text().splitlines())
    processor = BookProcessor(ProcessorSettings())
    first = run(processor, recs)
    again = run(processor, recs[10:])  # what arrives again after a SIGKILL
    assert [o for o in again if o.topic == "book.deltas"] == []
    assert processor.counters["duplicates"] == len([r for r in recs[10:] if b'"channel":"book"' in r.value])
    assert len([o for o in first if o.topic == "book.deltas"]) == 52


def test_checksum_mismatch_invalidates_requests_resync_and_recovers_on_snapshot() -> None:
    path = next(p for p in capture_files() if p.name.startswith("depthcharge_minagbp_d25_resync"))
    lines = path.read_text().splitlines()
    bad = next(i for i, ln in enumerate(lines) if '"type":"update"' in ln and i > 5)
    lines[bad] = lines[bad].replace('"checksum":', '"checksum":1')
    clock = iter(range(10**12, 10**13, 10**10))  # 10 s per call: resync never rate-limited here
    processor = BookProcessor(ProcessorSettings(), clock_ns=lambda: next(clock))
    out = run(processor, records(lines))
    events = [as_dict(o.record)["state"] for o in out if o.topic == "book.events"]
    assert events[:4] == ["live", "invalidated", "resyncing", "restored"]
    control = [as_dict(o.record) for o in out if o.topic == "control"]
    assert control[0]["symbol"] == "MINA/GBP" and control[0]["action"] == "resync"
    assert processor.counters["discarded"] > 0
    assert processor.pairs["MINA/GBP"].state == "live"


def test_malformed_and_unapplicable_frames_go_to_the_dead_letter_topic() -> None:
    processor = BookProcessor(ProcessorSettings())
    out = run(processor, [
        RawRecord(b'{"channel":"book","type":"upd', b"BTC/USD", 3, 7),
        RawRecord(b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":1.0,'
                  b'"qty":1.0}],"asks":[],"checksum":1}]}', b"BTC/USD", 3, 8),
    ])
    dead = [as_dict(o.record) for o in out if o.topic == "deadletter"]
    assert dead[0]["reason"].startswith("invalid JSON") and dead[0]["raw_offset"] == 7
    assert dead[1]["reason"].startswith("update before any snapshot")
    assert [o.key for o in out if o.topic == "deadletter"] == ["BTC-USD", "BTC-USD"]
    assert processor.counters["deadletter"] == 2


def _snapshot(symbol: str, price: str = "62800.1", qty: str = "1.5") -> bytes:
    try:  # a sane snapshot verifies
        checksum = L2Book(symbol, 10).apply_snapshot([(price, qty)], [("62900.5", "2.0")]).checksum
    except (ArithmeticError, ValueError):
        checksum = 1
    return (f'{{"channel":"book","type":"snapshot","data":[{{"symbol":"{symbol}","bids":[{{"price":{price},'
            f'"qty":{qty}}}],"asks":[{{"price":62900.5,"qty":2.0}}],"checksum":{checksum},'
            f'"timestamp":"2026-12-02T01:30:40.672494Z"}}]}}').encode()


def _reasons(out: list[Output]) -> list[str]:
    return [as_dict(o.record)["reason"] for o in out if o.topic == "deadletter"]


@pytest.mark.parametrize(("price", "why"), [
    ("1" * 400, "numbers longer than 32 are refused"),
    ("1e400", "1e400"),
    ("-5.0", "prices must be positive"),
])
def test_hostile_numbers_are_refused_by_the_parser_with_a_reason(price: str, why: str) -> None:
    processor = BookProcessor(ProcessorSettings())
    out = run(processor, [RawRecord(_snapshot("BTC/USD", price=price), b"BTC/USD", 0, 1)])
    assert [r for r in _reasons(out) if why in r], _reasons(out)
    assert processor.pairs.get("BTC/USD") is None or processor.pairs["BTC/USD"].book is None


def test_frames_that_contradict_the_clusters_subscription_are_refused() -> None:
    processor = BookProcessor(ProcessorSettings(subscribed=("BTC/USD",), depth=25))

    def ack(depth: int) -> bytes:
        return (f'{{"method":"subscribe","result":{{"channel":"book","depth":{depth},"snapshot":true,'
                f'"symbol":"BTC/USD"}},"success":true}}').encode()

    out = run(processor, [
        RawRecord(_snapshot("FAKE/USD"), b"FAKE/USD", 0, 1),  # a pair nobody subscribed: no phantom book
        RawRecord(ack(25), b"BTC/USD", 0, 2, 1, lock_gen=1),
        RawRecord(_snapshot("BTC/USD"), b"BTC/USD", 0, 3, 1, lock_gen=1),
        RawRecord(ack(10), b"BTC/USD", 0, 4, 1, lock_gen=1),  # a forged depth for the live book
    ])
    reasons = _reasons(out)
    assert any("FAKE/USD, not subscribed by this cluster" in r for r in reasons), reasons
    assert any("at depth 10 contradicts the cluster's depth 25" in r for r in reasons), reasons
    assert "FAKE/USD" not in processor.pairs
    assert processor.pairs["BTC/USD"].depth == 25


def test_a_precision_its_live_book_cannot_be_written_in_is_refused_not_looped_on() -> None:
    processor = BookProcessor(ProcessorSettings())
    run(processor, [RawRecord(_snapshot("BTC/USD"), b"BTC/USD", 0, 1)])
    forged = (b'{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[{"symbol":"BTC/USD",'
              b'"base":"BTC","quote":"USD","status":"online","qty_precision":0,"qty_increment":1,'
              b'"price_precision":0,"price_increment":1,"cost_precision":5,"qty_min":0.0001}]}}')
    out = run(processor, [RawRecord(forged, b"conn:1", 0, 2)])
    assert [r for r in _reasons(out) if "contradicts its live book" in r], _reasons(out)
    assert "BTC/USD" not in processor.precisions


def test_an_internal_error_invalidates_the_books_the_frame_touched() -> None:
    path = next(p for p in capture_files() if p.name.startswith("depthcharge_btcusd_d25"))
    recs = records(path.read_text().splitlines())[:8]
    processor = BookProcessor(ProcessorSettings())
    run(processor, recs)
    assert processor.pairs["BTC/USD"].state == "live"
    out: list[Output] = []
    processor.fail(recs[-1], "internal error: ZeroDivisionError: boom", out)
    assert processor.pairs["BTC/USD"].state in ("invalidated", "resyncing")
    assert [o for o in out if o.topic == "control"], "a resync is requested"


def test_a_rebuilt_pair_never_reuses_a_delta_identity() -> None:
    path = next(p for p in capture_files() if p.name.startswith("depthcharge_minagbp_d25_resync"))
    lines = path.read_text().splitlines()
    first = run(BookProcessor(ProcessorSettings()), records(lines))
    original = {(d["symbol"], d["epoch"], d["seq"]): d for d in (as_dict(o.record) for o in first)
                if "epoch" in d and "seq" in d and d.get("is_snapshot") is not None}
    # state lost (a rebuild): a fresh processor starts at the capture's second snapshot, seq from 1 again
    second_snapshot = [i for i, ln in enumerate(lines) if '"type":"snapshot"' in ln and '"channel":"book"' in ln][1]
    again = run(BookProcessor(ProcessorSettings()), records(lines[second_snapshot:]))
    rebuilt = [as_dict(o.record) for o in again if o.topic == "book.deltas"]
    assert rebuilt and rebuilt[0]["seq"] == 1
    assert [d for d in rebuilt if (d["symbol"], d["epoch"], d["seq"]) in original] == [], \
        "a consumer deduping by (symbol, epoch, seq) would drop new data"
    # the same frames processed again keep their identity (so repeats are recognized)
    same = run(BookProcessor(ProcessorSettings()), records(lines))
    assert [(as_dict(o.record)["epoch"], as_dict(o.record)["seq"]) for o in same if o.topic == "book.deltas"] == \
        [(as_dict(o.record)["epoch"], as_dict(o.record)["seq"]) for o in first if o.topic == "book.deltas"]


def test_a_change_of_krakens_system_status_is_an_event_once() -> None:
    def status(system: str) -> str:
        return ('{"channel":"status","type":"update","data":[{"version":"2.0.10","system":"%s",'
                '"api_version":"v2","connection_id":77}]}' % system)

    processor = BookProcessor(ProcessorSettings())
    out = run(processor, records([status("online"), status("online"), status("maintenance"), status("maintenance"),
                                  status("online")]))
    events = [as_dict(o.record) for o in out if o.topic == "metrics"]
    assert [(e["metric"], e["previous"], e["system"]) for e in events] == [
        ("exchange_status", None, "online"), ("exchange_status", "online", "maintenance"),
        ("exchange_status", "maintenance", "online")]
    assert events[1]["connection_id"] == 77 and events[1]["raw_offset"] == 2
    assert processor.system == "online"


def _book_frame(kind: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], checksum: int,
                stamp: str) -> str:
    def side(levels: list[tuple[str, str]]) -> str:
        return ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in levels)

    return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"BTC/USD","bids":[{side(bids)}],'
            f'"asks":[{side(asks)}],"checksum":{checksum},"timestamp":"2026-12-02T01:30:{stamp}Z"}}]}}')


def test_one_grid_snapshot_per_boundary_quiet_intervals_included() -> None:
    book = L2Book("BTC/USD", 10)
    frames = [("snapshot", [("62800.1", "1.5")], [("62900.5", "2.0")], "10.200000"),
              ("update", [("62800.2", "1.0")], [], "10.500000"),
              ("update", [("62800.3", "1.0")], [], "14.300000"),  # quiet from 10.5 to 14.3
              ("snapshot", [("62801.0", "3.0")], [("62900.5", "2.0")], "16.700000")]  # a resync's snapshot
    lines = []
    for kind, bids, asks, stamp in frames:
        checksum = (book.apply_snapshot(bids, asks) if kind == "snapshot" else book.apply_update(bids, asks)).checksum
        lines.append(_book_frame(kind, bids, asks, checksum, stamp))
    processor = BookProcessor(ProcessorSettings())
    out = run(processor, records(lines))
    grid = [as_dict(o.record) for o in out if o.topic == "book.snapshots" and as_dict(o.record)["reason"] == "grid"]
    seconds = [(g["ts_grid_ns"] // 1_000_000_000) % 60 for g in grid]
    assert seconds == [11, 12, 13, 14, 15, 16], "every second crossed, once"
    # through the quiet seconds the book stood at its 10.5 state; at 15 and 16 at its 14.3 state
    assert [g["bids"][0][0] for g in grid] == ["62800.2"] * 4 + ["62800.3"] * 2
    assert sum(1 for o in out if o.topic == "metrics") == 2, "the metrics once per crossing"
    assert processor.pairs["BTC/USD"].next_grid_ns % 60_000_000_000 // 1_000_000_000 == 17

"""The pure book processor on real captures: deltas, events, duplicates, dead letters."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from krakenflow.client import BookTracker
from models.book import L2Book
from models.kraken.wire import frame_key
from models.processor import BookProcessor, Output, ProcessorSettings, RawRecord
from models.records import as_dict, encode
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


# -- who may change a book: the live ingest (lock_gen), under its own key, not against its checksums ----


def _levels(levels: list[tuple[str, str]]) -> str:
    return ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in levels)


def _book_msg(symbol: str, kind: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], checksum: int,
              second: int = 40) -> bytes:
    return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}","bids":[{_levels(bids)}],'
            f'"asks":[{_levels(asks)}],"checksum":{checksum},"timestamp":"2026-12-02T01:30:{second}.000000Z"}}]}}'
            ).encode()


def _ack_msg(symbol: str, depth: int) -> bytes:
    return (f'{{"method":"subscribe","result":{{"channel":"book","depth":{depth},"snapshot":true,'
            f'"symbol":"{symbol}"}},"success":true}}').encode()


def _instrument_msg(symbol: str, precision: tuple[int, int], kind: str = "update") -> bytes:
    return (f'{{"channel":"instrument","type":"{kind}","data":{{"assets":[],"pairs":[{{"symbol":"{symbol}",'
            f'"price_precision":{precision[0]},"qty_precision":{precision[1]}}}]}}}}').encode()


class Cluster:
    """A worker's processor fed like the pipeline feeds it: per-partition offsets, lock_gen headers."""

    def __init__(self, rule: str = "never", subscribed: tuple[str, ...] | None = ("USDT/USD", "ETH/USD", "LINK/USD"),
                 precision_of: Callable[[str], tuple[int, int] | None] = lambda s: None) -> None:
        clock = iter(range(10**12, 10**15, 10**10))  # 10 s per call: resyncs never rate-limited
        self.processor = BookProcessor(ProcessorSettings(subscribed=subscribed, depth=25, require_lock_gen=rule),
                                       precision_of=precision_of, clock_ns=lambda: next(clock))
        self.offsets: dict[int, int] = {}

    def send(self, key: bytes | None, value: bytes, partition: int = 0, lock_gen: int | None = 1,
             recv_ns: int | None = 1) -> list[Output]:
        self.offsets[partition] = offset = self.offsets.get(partition, -1) + 1
        out: list[Output] = []
        self.processor.process_into(RawRecord(value, key, partition, offset, recv_ns, lock_gen), out)
        for o in out:
            encode(o.record)  # every output record can be written
        return out

    def live(self, symbol: str, precision: tuple[int, int], bids: list[tuple[str, str]],
             asks: list[tuple[str, str]], partition: int = 0) -> int:
        """The pair live at depth 25 (written by the live ingest); returns its snapshot's checksum."""
        checksum = L2Book(symbol, 25, precision).apply_snapshot(bids, asks).checksum
        self.send(b"conn:1", _instrument_msg(symbol, precision, "snapshot"), partition)
        self.send(symbol.encode(), _ack_msg(symbol, 25), partition)
        self.send(symbol.encode(), _book_msg(symbol, "snapshot", bids, asks, checksum), partition)
        st = self.processor.pairs[symbol]
        assert st.state == "live" and st.depth == 25
        return checksum


USDT = ([("1.00010", "500.00")], [("1.00020", "700.00")])


def test_without_the_live_ingests_lock_gen_a_frame_changes_nothing() -> None:
    cluster = Cluster("always")
    cluster.live("USDT/USD", (5, 2), *USDT)
    book = cluster.processor.pairs["USDT/USD"].book
    assert book is not None
    before = (book.levels("bids"), book.levels("asks"))
    forged = [
        (b"USDT/USD", _ack_msg("USDT/USD", 10)),  # the depth of a live book
        (b"USDT/USD", _book_msg("USDT/USD", "snapshot", [("0.50000", "1.00")], [("0.60000", "1.00")], 0)),
        (b"conn:7", _instrument_msg("USDT/USD", (2, 2))),
        (b"USDT/USD", b'{"channel":"trade","type":"update","data":[{"symbol":"USDT/USD","side":"buy","price":1.0001,'
                      b'"qty":1.00,"ord_type":"market","trade_id":5,"timestamp":"2026-12-02T01:30:41.000000Z"}]}'),
        (b"USDT/USD", b'{"channel":"status","type":"update","data":[{"system":"maintenance"}]}'),
    ]
    for key, value in forged:
        assert _reasons(cluster.send(key, value, lock_gen=None))[0].startswith("unauthenticated: "), value
    assert _reasons(cluster.send(b"USDT/USD", b"{not json", lock_gen=None))[0].startswith("invalid JSON")
    assert _reasons(cluster.send(b"USDT/USD", _ack_msg("USDT/USD", 10), lock_gen=0))[0].startswith("fenced: ")
    # a generation no election makes would fence the live ingest's own frames after it
    assert _reasons(cluster.send(b"USDT/USD", _ack_msg("USDT/USD", 10), lock_gen=1 << 40))[0].startswith(
        "unauthenticated: lock_gen")
    st, processor = cluster.processor.pairs["USDT/USD"], cluster.processor
    assert (st.state, st.depth, st.book, processor.precisions["USDT/USD"], processor.system) == \
        ("live", 25, book, (5, 2), None)
    assert (book.levels("bids"), book.levels("asks")) == before
    assert processor.counters["unauthenticated"] == 6 and processor.counters["fenced"] == 1
    assert cluster.send(b"USDT/USD", _ack_msg("USDT/USD", 25), lock_gen=1) == []  # the live ingest goes on


def test_seen_requires_lock_gen_on_a_partition_once_the_live_ingest_wrote_there() -> None:
    cluster = Cluster("seen")
    levels = [("10.00", "1")], [("10.10", "1")]
    snapshot = _book_msg("ETH/USD", "snapshot", *levels, L2Book("ETH/USD", 10).apply_snapshot(*levels).checksum)
    # a replay into a partition no live ingest wrote: applied
    assert _reasons(cluster.send(b"ETH/USD", snapshot, partition=1, lock_gen=None)) == []
    assert cluster.processor.pairs["ETH/USD"].state == "live"
    cluster.send(b"USDT/USD", _ack_msg("USDT/USD", 25), partition=1, lock_gen=3)
    assert _reasons(cluster.send(b"ETH/USD", snapshot, partition=1, lock_gen=None))[0].startswith("unauthenticated")
    assert _reasons(cluster.send(b"LINK/USD", _ack_msg("LINK/USD", 10), partition=2, lock_gen=None)) == []
    assert cluster.processor.pairs["LINK/USD"].depth == 10  # partition 2 has seen no live ingest yet


def test_never_lets_a_replay_without_lock_gen_through() -> None:
    cluster = Cluster("never")
    cluster.send(b"USDT/USD", _ack_msg("USDT/USD", 25), lock_gen=1)
    assert cluster.send(b"USDT/USD", _ack_msg("USDT/USD", 10), lock_gen=None) == []
    assert cluster.processor.pairs["USDT/USD"].depth == 10


def test_a_pair_frame_under_another_pairs_key_makes_no_second_book() -> None:
    cluster = Cluster("never")
    cluster.live("ETH/USD", (2, 8), [("3400.00", "1.00000000")], [("3400.10", "2.00000000")])
    link = [("14.00000", "1.00000000")], [("14.00010", "1.00000000")]
    snapshot = _book_msg("LINK/USD", "snapshot", *link, L2Book("LINK/USD", 25, (5, 8)).apply_snapshot(*link).checksum)
    trade = (b'{"channel":"trade","type":"update","data":[{"symbol":"LINK/USD","side":"buy","price":14.0,'
             b'"qty":1.0,"ord_type":"market","trade_id":5,"timestamp":"2026-12-02T01:30:41.000000Z"}]}')
    for key, value in [(b"ETH/USD", snapshot), (b"ETH/USD", trade), (b"ETH/USD", _ack_msg("LINK/USD", 10)),
                       (None, snapshot), (b"conn:1", snapshot)]:
        reasons = _reasons(cluster.send(key, value, partition=3))
        assert len(reasons) == 1 and reasons[0].startswith("misfiled: ") and "LINK/USD" in reasons[0], reasons
    assert "LINK/USD" not in cluster.processor.pairs and cluster.processor.counters["misfiled"] == 5
    assert cluster.processor.pairs["ETH/USD"].state == "live"
    assert _reasons(cluster.send(b"LINK/USD", snapshot, partition=3)) == []  # under its own key: a book
    capture = Cluster("never", subscribed=None)  # a capture has no keys at all
    assert _reasons(capture.send(None, snapshot)) == [] and capture.processor.pairs["LINK/USD"].book is not None


def test_header_values_no_record_can_hold_are_dropped() -> None:
    cluster = Cluster("never")
    out = cluster.send(b"USDT/USD", b"{not json", recv_ns=10**30)
    assert as_dict(out[0].record)["ts_recv_ns"] is None


JPY = ([("9400000", "0.05000000"), ("9399990", "1.00000000")], [("9400010", "0.50000000")])


def test_an_instrument_precision_that_breaks_a_verified_book_is_kept_out_not_looped_on() -> None:
    cluster = Cluster("never", subscribed=("BTC/JPY",))
    cluster.live("BTC/JPY", (0, 8), *JPY)
    kraken = L2Book("BTC/JPY", 25, (0, 8))  # Kraken's own book: its checksums are what frames carry
    kraken.apply_snapshot(*JPY)
    cluster.send(b"conn:1", _instrument_msg("BTC/JPY", (2, 8)))  # forged, with the live ingest's header
    bids = [("9399995", "0.10000000")]
    out = cluster.send(b"BTC/JPY", _book_msg("BTC/JPY", "update", bids, [], kraken.apply_update(bids, []).checksum, 41))
    events = [as_dict(o.record) for o in out if o.topic == "book.events"]
    assert [e["state"] for e in events] == ["invalidated", "resyncing"]
    assert "instrument precision (2, 8) for BTC/JPY broke its verified book" in events[0]["reason"]
    assert len([o for o in out if o.topic == "control"]) == 1
    processor = cluster.processor
    assert processor.precisions["BTC/JPY"] == (0, 8) and processor.suspect_precisions["BTC/JPY"] == (2, 8)
    # the resync's snapshot, at the precision kept, restores the book
    snapshot = [("9400000", "0.05000000"), ("9399995", "0.10000000"), ("9399990", "1.00000000")], JPY[1]
    out = cluster.send(b"BTC/JPY", _book_msg("BTC/JPY", "snapshot", *snapshot,
                                             kraken.apply_snapshot(*snapshot).checksum, 42))
    assert [as_dict(o.record)["state"] for o in out if o.topic == "book.events"] == ["restored"]
    assert as_dict(next(o.record for o in out if o.topic == "book.deltas"))["bids"][0] == ["9400000", "0.05000000"]
    # offered again: refused, dead-lettered (an alert), and the book is not touched
    out = cluster.send(b"conn:1", _instrument_msg("BTC/JPY", (2, 8)))
    assert [o.topic for o in out] == ["deadletter"] and _reasons(out)[0].startswith("suspect instrument: ")
    bids = [("9399996", "0.20000000")]
    out = cluster.send(b"BTC/JPY", _book_msg("BTC/JPY", "update", bids, [], kraken.apply_update(bids, []).checksum, 43))
    assert [as_dict(o.record)["checksum_ok"] for o in out if o.topic == "book.deltas"] == [True]
    st = processor.pairs["BTC/JPY"]
    assert (st.state, st.resyncs, processor.counters["instrument_conflicts"]) == ("live", 1, 2)


def test_a_real_precision_change_is_followed() -> None:
    cluster = Cluster("never", subscribed=("BTC/JPY",))
    cluster.live("BTC/JPY", (0, 8), *JPY)
    cluster.send(b"conn:1", _instrument_msg("BTC/JPY", (1, 8)))
    kraken = L2Book("BTC/JPY", 25, (1, 8))  # Kraken writes its book at the new precision from now on
    kraken.apply_snapshot(*JPY)
    bids = [("9399995.5", "0.10000000")]
    out = cluster.send(b"BTC/JPY", _book_msg("BTC/JPY", "update", bids, [], kraken.apply_update(bids, []).checksum, 41))
    assert [as_dict(o.record)["checksum_ok"] for o in out if o.topic == "book.deltas"] == [True]
    assert cluster.processor.precisions["BTC/JPY"] == (1, 8) and not cluster.processor.suspect_precisions


def test_a_suspect_precision_from_the_instruments_table_gives_way_to_the_verified_one() -> None:
    table = {"BTC/JPY": (0, 8)}  # what every worker reads; another worker may write a forged precision into it
    cluster = Cluster("never", subscribed=("BTC/JPY",), precision_of=table.get)
    checksum = L2Book("BTC/JPY", 25, (0, 8)).apply_snapshot(*JPY).checksum
    cluster.send(b"BTC/JPY", _ack_msg("BTC/JPY", 25))
    cluster.send(b"BTC/JPY", _book_msg("BTC/JPY", "snapshot", *JPY, checksum))
    table["BTC/JPY"] = (2, 8)
    out = cluster.send(b"BTC/JPY", _book_msg("BTC/JPY", "snapshot", *JPY, checksum, 41))  # a reconnect's snapshot
    assert [as_dict(o.record)["checksum_ok"] for o in out if o.topic == "book.deltas"] == [True]
    assert not [o for o in out if o.topic in ("book.events", "control", "deadletter")]
    st = cluster.processor.pairs["BTC/JPY"]
    assert st.book is not None and st.book.precision == (0, 8) and st.state == "live"
    assert cluster.processor.precisions["BTC/JPY"] == (0, 8)  # published: the table heals

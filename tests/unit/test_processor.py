"""The pure book processor on real captures: deltas, events, duplicates, dead letters."""

from __future__ import annotations

import orjson
import pytest

from app.kraken_client import frame_key
from models.processor import BookProcessor, Output, ProcessorSettings, RawRecord
from tests.conftest import capture_files
from tests.deltas import DeltaConsumer

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
        processor.process(rec, out)
    return out


def test_captures_give_one_verified_delta_per_book_message_and_deltas_rebuild_books() -> None:
    total = 0
    for path in capture_files():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        processor = BookProcessor(ProcessorSettings())
        out = run(processor, records(lines))
        deltas = [orjson.loads(o.value) for o in out if o.topic == "book.deltas"]
        assert all(d["checksum_ok"] for d in deltas), path.name
        assert not [o for o in out if o.topic in ("deadletter", "control")], path.name
        total += len(deltas)
        consumer = DeltaConsumer()
        for d in deltas:
            consumer.apply_record(d)
        for st in processor.pairs.values():
            assert st.book is not None
            assert consumer.levels(st.norm, "bids") == st.book.levels("bids")
            assert consumer.levels(st.norm, "asks") == st.book.levels("asks")
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
    events = [orjson.loads(o.value)["state"] for o in out if o.topic == "book.events"]
    assert events[:4] == ["live", "invalidated", "resyncing", "restored"]
    control = [orjson.loads(o.value) for o in out if o.topic == "control"]
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
    dead = [orjson.loads(o.value) for o in out if o.topic == "deadletter"]
    assert dead[0]["reason"].startswith("invalid JSON") and dead[0]["raw_offset"] == 7
    assert dead[1]["reason"].startswith("update before any snapshot")
    assert [o.key for o in out if o.topic == "deadletter"] == ["BTC-USD", "BTC-USD"]
    assert processor.counters["deadletter"] == 2

"""Hostile frames (tests/fuzz_corpus.py) through the book processor: one dead letter each, nothing else."""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Iterator
from zlib import crc32

import pytest

from models import native
from models.book import L2Book
from models.kraken.frames import ParseError, parse_frame
from models.processor import BookProcessor, Output, ProcessorSettings, RawRecord
from models.records import encode
from tests.fuzz_corpus import Hostile, corpus, deep

pytestmark = pytest.mark.unit

#: the pairs of the live books the corpus is mixed into, with their (price, qty) precisions
PAIRS = {"BTC/USD": (1, 8), "ETH/USD": (2, 8), "LINK/USD": (5, 8), "USDT/USD": (5, 2)}
CORPUS = corpus(list(PAIRS))
ENGINES = [pytest.param(True, id="native", marks=pytest.mark.skipif(not native.available, reason="not built")),
           pytest.param(False, id="python")]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[bool]:
    was = native.enabled
    native.use(request.param)
    yield request.param
    native.use(was)


def partition(key: bytes) -> int:
    return crc32(key) % 4


class Feed:
    """A worker's processor with every pair live (written by the live ingest, lock generation 1)."""

    def __init__(self, rule: str) -> None:
        self.processor = BookProcessor(ProcessorSettings(subscribed=tuple(PAIRS), depth=25, require_lock_gen=rule))
        self.offsets = [0, 0, 0, 0]
        pairs = ",".join(f'{{"symbol":"{s}","price_precision":{p},"qty_precision":{q}}}' for s, (p, q) in PAIRS.items())
        self.send(b"conn:1", f'{{"channel":"instrument","type":"snapshot","data":{{"pairs":[{pairs}]}}}}'.encode(), 1)
        for symbol, (p, q) in PAIRS.items():
            self.send(symbol.encode(), (f'{{"method":"subscribe","result":{{"channel":"book","depth":25,"symbol":'
                                        f'"{symbol}"}},"success":true}}').encode(), 1)
            bids, asks = [(f"{100 + i}.{'5' * p}", f"1.{'0' * q}") for i in range(3)], [(f"{200}.{'5' * p}", "2")]
            checksum = L2Book(symbol, 25, (p, q)).apply_snapshot(bids, asks).checksum
            levels = [",".join(f'{{"price":{a},"qty":{b}}}' for a, b in side) for side in (bids, asks)]
            self.send(symbol.encode(), (f'{{"channel":"book","type":"snapshot","data":[{{"symbol":"{symbol}","bids":'
                                        f'[{levels[0]}],"asks":[{levels[1]}],"checksum":{checksum},'
                                        '"timestamp":"2026-08-16T23:37:05.399046Z"}]}').encode(), 1)
        assert self.live()

    def send(self, key: bytes, value: bytes, lock_gen: int | None = None) -> list[Output]:
        p = partition(key)
        self.offsets[p] += 1
        out: list[Output] = []
        self.processor.process_into(RawRecord(value, key, p, self.offsets[p], time.time_ns(), lock_gen), out)
        return out

    def live(self) -> bool:
        pairs = self.processor.pairs
        return all(pairs[s].state == "live" and pairs[s].depth == 25 and pairs[s].book.precision == PAIRS[s]  # type: ignore[union-attr]
                   for s in PAIRS)


def dead_letter(out: list[Output], frame: Hostile) -> str:
    """The one dead letter a frame made (and nothing else), its reason; every record encodable."""
    assert [o.topic for o in out] == ["deadletter"], (frame.name, [(o.topic, o.record) for o in out])
    record = encode(out[0].record)
    assert len(record) < 200_000, frame.name  # far below the broker's 1 MiB message limit
    reason: str = out[0].record.reason  # type: ignore[union-attr]
    assert reason, frame.name
    return reason


def test_the_corpus_covers_what_the_issue_names() -> None:
    names = " | ".join(f.name for f in CORPUS)
    for needed in ("deep array 40000", "deep object 40000", "deep mixed", "deep array in book", "1 MB",
                   "NaN as", "Infinity as", "1e999999999", "duplicate type", "as book data.0.symbol",
                   "as instrument data.pairs.0.price_precision", "as trade data.0.side", "as ticker data.0.bid",
                   "as ohlc data.0.interval", "as status data.0.system", "as ack result.depth", "as pong req_id",
                   "cut in a 2-byte character", "under ETH/USD", "FAKE/USD"):
        assert needed in names, needed
    assert max(len(f.value) for f in CORPUS) >= 1_000_000
    assert len({(f.name, f.value) for f in CORPUS}) == len(CORPUS) and corpus(list(PAIRS)) == CORPUS  # seeded


@pytest.mark.parametrize("rule", ["never", "always"])
def test_every_hostile_frame_costs_one_dead_letter_and_the_books_stay_live(engine: bool, rule: str) -> None:
    feed = Feed(rule)
    for frame in CORPUS:
        reason = dead_letter(feed.send(frame.key, frame.value), frame)
        if rule == "never" and frame.reason is not None:
            assert frame.reason in reason, (frame.name, reason)
        if rule == "always":  # a frame that parses is refused for having no lock generation
            assert reason.startswith("unauthenticated") or isinstance(parse_frame(frame.value), ParseError), \
                (frame.name, reason)
    assert feed.live()
    counters = feed.processor.counters
    assert counters["deadletter"] == len(CORPUS) and counters["resyncs"] == 0


def test_parse_frame_never_raises_on_deep_nesting_even_with_a_small_stack() -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # the decoder recursed into a few thousand brackets: now it never sees them
    try:
        for shape in ("array", "object", "mixed"):
            result = parse_frame(deep(shape, 50_000).encode())
            assert isinstance(result, ParseError) and "nested deeper than 16" in result.reason
    finally:
        sys.setrecursionlimit(limit)


def test_whatever_the_decoder_raises_is_a_parse_error() -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 10)  # too little stack even for nesting the limit allows
    try:
        result = parse_frame(deep("object", 16).encode())
    finally:
        sys.setrecursionlimit(limit)
    assert isinstance(result, ParseError) and result.reason.startswith("unparseable frame: RecursionError")


def test_fail_is_safe_on_any_record_and_touches_only_what_the_record_applied() -> None:
    feed = Feed("never")
    for frame in CORPUS:  # as if processing each had raised: fail must not look into the frame again
        out: list[Output] = []
        feed.processor.fail(RawRecord(frame.value, frame.key, 0, 10**6 + len(out)), "internal error: boom", out)
        assert [o.topic for o in out] == ["deadletter"], frame.name
    assert feed.live()
    # a record that did change a book: that book (only) is invalidated and resyncs
    update = (b'{"channel":"book","type":"update","data":[{"symbol":"ETH/USD","bids":[{"price":99.00,'
              b'"qty":1.00000000}],"asks":[],"checksum":1,"timestamp":"2026-08-16T23:37:06.000000Z"}]}')
    feed.send(b"ETH/USD", update, 1)
    record = RawRecord(update, b"ETH/USD", partition(b"ETH/USD"), feed.offsets[partition(b"ETH/USD")])
    out = []
    feed.processor.fail(record, "internal error: boom", out)
    assert {s for s, st in feed.processor.pairs.items() if st.state != "live"} == {"ETH/USD"}

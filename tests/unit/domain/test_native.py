"""The native book core (``native/``) is the Python engine, message for message.

Compared on every real capture and the simulator recording (as recorded, and with Kraken's edge shape
mutated into their updates), on simulator sessions at depth 1000 and on the property tests' random books;
the parser on every capture line, simulator frames and mutated frames. With a Rust toolchain on
the machine ``make`` builds the core, so it must be there; without one these tests are skipped.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import native
from models.book import DEPTHS, L2Book, new_book
from models.kraken.frames import parse_frame
from models.kraken.messages import Ack, BookFrame, InstrumentFrame
from models.numbers import NumberError, format_ticks, scale
from models.session import BookSession, PairState, RawRecord
from sim import render
from sim.exchange import PairMarket
from sim.pairs import catalogue
from tests.conftest import ROOT, capture_files
from tests.unit.domain.test_book import _messages

pytestmark = pytest.mark.unit

#: The simulator's seed-11 DOGE/USD depth-10 session: it holds Kraken's edge shape (see test_truncation).
SIM_RECORDING = ROOT / "tests" / "fixtures" / "sim-recordings" / "sim-seed11_dogeusd_d10.jsonl"


def test_the_native_core_is_built_where_a_rust_toolchain_is() -> None:
    assert native.available or shutil.which("cargo") is None, "cargo is here but krakenflow_native is not built: make"


requires_native = pytest.mark.skipif(not native.available, reason="the native core is not built (no Rust toolchain)")


class Engine:
    """Switches the engine for a block: ``with Engine(True): ...``."""

    def __init__(self, on: bool) -> None:
        self.on = on

    def __enter__(self) -> None:
        self.was = native.enabled
        native.use(self.on)

    def __exit__(self, *exc: object) -> None:
        native.use(self.was)


class Trace(BookSession):
    """Every delta and reject of a session, as plain values."""

    def __init__(self) -> None:
        super().__init__()
        self.trace: list[Any] = []

    def on_delta(self, st: PairState, delta: Any, record: RawRecord) -> None:
        self.trace.append((record.offset, delta.symbol, delta.is_snapshot, list(delta.bids), list(delta.asks),
                           delta.checksum, delta.expected_checksum, delta.checksum_ok, delta.crossed))

    def on_reject(self, record: RawRecord, reason: str) -> None:
        self.trace.append((record.offset, "reject", reason))


def run_session(lines: list[bytes], on: bool) -> tuple[list[Any], dict[str, Any]]:
    with Engine(on):
        session = Trace()
        for n, line in enumerate(lines):
            session.process(RawRecord(line, None, 0, n))
        books = {s: (p.book.levels("bids"), p.book.levels("asks"), p.book.checksum(), type(p.book).__module__)
                 for s, p in session.pairs.items() if p.book is not None}
        return session.trace, books


def sim_session(pairs: int, depth: int, updates: int, seed: int) -> list[bytes]:
    specs = catalogue(pairs)
    markets = [PairMarket(spec, seed) for spec in specs]
    lines = [render.instrument(specs).encode()]
    now = 1_700_000_000_000_000_000
    for m in markets:
        lines.append(render.response("subscribe", result={"channel": "book", "depth": depth, "snapshot": True,
                                                           "symbol": m.spec.symbol}, time_in_ns=now).encode())
        bids, asks, checksum = m.snapshot(depth)
        lines.append(render.book(m.spec.symbol, True, bids, asks, checksum, now).encode())
    for i in range(updates):
        m = markets[i % len(markets)]
        event = m.step((depth,), now + i * 1000)
        b, a = event.views[depth]
        if b or a:
            lines.append(render.book(m.spec.symbol, False, b, a, event.checksum, event.ts_ns).encode())
    return lines


@requires_native
@pytest.mark.parametrize("path", capture_files(), ids=lambda p: p.name)
def test_real_captures_give_the_same_deltas_and_books(path: Path) -> None:
    _same_deltas_and_books(path)


@requires_native
def test_the_simulator_recording_gives_the_same_deltas_and_books() -> None:
    _same_deltas_and_books(SIM_RECORDING)


def _same_deltas_and_books(path: Path) -> None:
    lines = [ln for ln in path.read_bytes().splitlines() if ln.strip()]
    python, python_books = run_session(lines, on=False)
    rust, rust_books = run_session(lines, on=True)
    assert rust == python
    assert {s: b[:3] for s, b in rust_books.items()} == {s: b[:3] for s, b in python_books.items()}
    assert any(b[3] == "krakenflow_native" for b in rust_books.values()), "the native book was not used"


@requires_native
@pytest.mark.parametrize(("depth", "seed"), [(1000, 1), (1000, 2), (10, 3), (25, 4)])
def test_simulator_sessions_give_the_same_deltas_and_books(depth: int, seed: int) -> None:
    lines = sim_session(pairs=6, depth=depth, updates=3000, seed=seed)
    python, python_books = run_session(lines, on=False)
    rust, rust_books = run_session(lines, on=True)
    assert len(python) > 2000 and all(t[7] for t in python if t[1] != "reject")
    assert rust == python
    assert {s: b[:3] for s, b in rust_books.items()} == {s: b[:3] for s, b in python_books.items()}


def _apply(book: Any, is_snapshot: bool, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> Any:
    try:
        d = (book.apply_snapshot if is_snapshot else book.apply_update)(bids, asks, 12345)
    except NumberError as exc:
        return ("error", str(exc))
    return (d.is_snapshot, list(d.bids), list(d.asks), d.checksum, d.checksum_ok, d.crossed,
            book.levels("bids"), book.levels("asks"), book.checksum_text(), book.best(), len(book),
            book.count("bids"), book.count("asks"))


@requires_native
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), depth=st.sampled_from((1, 3, *DEPTHS)), pp=st.integers(0, 12),
       qp=st.integers(0, 12), n_updates=st.integers(1, 80), stale=st.booleans())
def test_random_books_are_identical(seed: int, depth: int, pp: int, qp: int, n_updates: int, stale: bool) -> None:
    rng = random.Random(seed)
    messages = _messages(rng, depth, pp, qp, n_updates)
    # `stale`: the book's precision one decimal short of the tokens', so some levels cannot be written
    precision = (max(0, pp - 1), qp) if stale else (pp, qp)
    python, rust = L2Book("T/USD", depth, precision), native.Book("T/USD", depth, precision)
    for is_snapshot, bids, asks in messages:
        outcome = _apply(rust, is_snapshot, bids, asks)
        assert outcome == _apply(python, is_snapshot, bids, asks)
        if outcome[0] == "error":  # a book that raised is dropped or invalidated by its session: done
            return
    for new in ((pp + 1, qp), (max(0, pp - 2), qp)):
        outcome = []
        for book in (python, rust):
            try:
                book.set_precision(new)
                outcome.append((book.precision, book.levels("bids"), book.levels("asks"), book.checksum()))
            except ValueError as exc:
                outcome.append(("error", str(exc), book.precision, book.checksum()))
        assert outcome[0] == outcome[1]


def _edge(book: L2Book, side: str, rng: random.Random) -> list[tuple[str, str]]:
    """Kraken's edge shape on a full side of ``book``: a new price inside pushes the edge level out,
    then the pushed-out price is set or deleted, a level inside is cancelled or one beyond is added."""
    levels = book.levels(side)
    if len(levels) < max(2, book.depth) or book.precision is None:
        return []
    pp, qp = book.precision
    ticks = [scale(price, pp)[0] for price, _ in levels]
    gaps = [i for i in range(len(ticks) - 1) if abs(ticks[i + 1] - ticks[i]) > 1]
    if not gaps:
        return []
    i = rng.choice(gaps)
    zero = format_ticks(0, qp)

    def qty() -> str:
        return format_ticks(rng.randint(1, 10 ** (qp + 3)), qp)

    out = [(format_ticks((ticks[i] + ticks[i + 1]) // 2, pp), qty())]
    pushed = levels[-1][0]
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        beyond = ticks[-1] + (rng.randint(1, 3) if side == "asks" else -rng.randint(1, 3))
        if roll < 0.4:
            out.append((rng.choice(levels[:-1])[0], zero))
        elif roll < 0.7:
            out.append((pushed, qty() if rng.random() < 0.5 else zero))
        elif beyond > 0:
            out.append((format_ticks(beyond, pp), qty()))
    return out


@requires_native
@pytest.mark.parametrize("path", [*capture_files(), SIM_RECORDING], ids=lambda p: p.name)
def test_recorded_updates_with_the_edge_shape_mutated_in_are_identical(path: Path) -> None:
    rng = random.Random(path.name)
    precisions: dict[str, tuple[int, int]] = {}
    depth = 10
    books: dict[str, tuple[L2Book, Any]] = {}
    mutated = updates = 0
    for line in path.read_bytes().splitlines():
        frame = parse_frame(line)
        if isinstance(frame, InstrumentFrame):
            precisions.update((p.symbol, (p.price_precision, p.qty_precision)) for p in frame.pairs)
        elif isinstance(frame, Ack) and frame.channel == "book" and frame.depth:
            depth = frame.depth
        elif isinstance(frame, BookFrame):
            for data in frame.books:
                precision = precisions.get(data.symbol)
                if frame.is_snapshot and precision is not None:
                    books[data.symbol] = (L2Book(data.symbol, depth, precision),
                                          native.Book(data.symbol, depth, precision))
                if data.symbol not in books:
                    continue
                python, rust = books[data.symbol]
                bids, asks = data.bids, data.asks
                if not frame.is_snapshot:
                    updates += 1
                    side = rng.choice(("bids", "asks"))
                    edge = _edge(python, side, rng) if rng.random() < 0.5 else []
                    mutated += bool(edge)
                    bids, asks = (edge + bids, asks) if side == "bids" else (bids, edge + asks)
                assert _apply(rust, frame.is_snapshot, bids, asks) == _apply(python, frame.is_snapshot, bids, asks)
    assert mutated >= updates // 6, f"only {mutated} of {updates} updates mutated"


@requires_native
def test_new_book_picks_the_engine() -> None:
    with Engine(True):
        assert type(new_book("X/Y", 10, (1, 8))).__module__ == "krakenflow_native"
        assert type(new_book("X/Y", 10, None)) is L2Book  # unknown precision: Decimal ordering, Python
    with Engine(False):
        assert type(new_book("X/Y", 10, (1, 8))) is L2Book


def _parsed(line: bytes, on: bool) -> Any:
    with Engine(on):
        return repr(parse_frame(line))


@requires_native
def test_the_parser_is_identical_on_captures_simulator_frames_and_mutations() -> None:
    lines = [ln for p in capture_files() for ln in p.read_bytes().splitlines() if ln.strip()]
    lines += sim_session(pairs=4, depth=100, updates=400, seed=9)
    rng = random.Random(5)
    mutated = []
    for line in lines[:400]:
        for _ in range(3):
            i = rng.randrange(len(line))
            mutated.append(line[:i] + bytes([rng.choice(b'{}[]",:.-0123456789eE\\ a')]) + line[i + 1:])
            mutated.append(line[:i] + line[i + 1:])
    taken = 0
    for line in lines + mutated:
        assert _parsed(line, True) == _parsed(line, False), line[:200]
        taken += line.startswith(b'{"channel":"book"') and native.parse_book(line) is not None
    assert taken > 1000, "the native parser took too few frames to prove anything"

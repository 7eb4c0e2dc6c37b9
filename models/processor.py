"""The worker's book processor: the :class:`~models.session.BookSession` plus its output records. Pure.

The book agent feeds every record of its partitions to :meth:`BookProcessor.process` and sends the
:class:`Output` list it collects. Outputs per applied message: a delta (``book.deltas``); on state
changes a book event; after a verified snapshot an ``exchange`` snapshot; at every grid boundary of
exchange time (``snapshot_interval_ms``) a ``grid`` snapshot and the interval's book metrics; trades,
tickers and whale alerts; dead letters with their reason; resync requests (``control``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from models import marketdata
from models.book import BookDelta
from models.histogram import LatencyHistogram
from models.kraken.frames import Ack, StatusFrame, TickerFrame, TradeFrame
from models.marketdata import WhaleThresholds
from models.records import (
    EXCHANGE,
    BookDeltaRecord,
    BookEventRecord,
    BookMetricRecord,
    BookSnapshotRecord,
    ControlRecord,
    DeadLetterRecord,
    ExchangeStatusRecord,
    Record,
    SubscriptionErrorRecord,
)
from models.session import BookSession, PairState, Precision, RawRecord
from models.symbols import normalize

__all__ = ["BookProcessor", "Output", "PairState", "ProcessorSettings", "RawRecord"]


@dataclass(slots=True)
class Output:
    """A record to produce: topic suffix (``book.deltas``), key (normalized symbol), typed record."""

    topic: str
    key: str
    record: Record
    timestamp_ms: int | None = None  # the Kafka record timestamp (exchange time for trades: candle windows)


@dataclass(slots=True)
class ProcessorSettings:
    snapshot_interval_ms: int = 1000
    snapshot_levels: int = 10
    stale_after: float = 15.0
    resync_min_interval: float = 5.0
    whales: WhaleThresholds = field(default_factory=WhaleThresholds)
    #: the cluster's pairs and depth (None: accept any, as a capture replay does)
    subscribed: tuple[str, ...] | None = None
    depth: int | None = None
    #: whether frames without the live ingest's lock generation are refused: ``always``, ``seen`` (once
    #: their raw partition carried one) or ``never`` (captures, replays); see :mod:`models.session`
    require_lock_gen: str = "never"


#: a dead letter quotes this much of its frame (``raw_partition``/``raw_offset`` find the whole): a
#: megabyte frame must not make a record the broker refuses, which would stall the partition's commits
MAX_DEADLETTER_RAW = 65536
MAX_DEADLETTER_KEY = 256


#: grid snapshots one crossing may emit: a book quiet for an hour at the 1 s default gets them all
MAX_GRID_FILL = 3600


@dataclass(slots=True)
class _Window:
    """One pair's book metrics since its last grid boundary."""

    messages: int = 0
    checksum_ok: int = 0
    checksum_failed: int = 0
    latency_ns_max: int = 0
    latency_ns_sum: int = 0


class BookProcessor(BookSession):
    """All pairs of the partitions one worker owns; outputs accumulate in :attr:`out`."""

    def __init__(
        self, settings: ProcessorSettings, precision_of: Callable[[str], Precision | None] = lambda s: None,
        restore: Callable[[str], PairState | None] = lambda s: None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(precision_of, restore, clock_ns, settings.resync_min_interval, settings.subscribed,
                         settings.depth, settings.require_lock_gen)
        self.settings = settings
        self.grid_ns = settings.snapshot_interval_ms * 1_000_000
        self.latency = LatencyHistogram()
        self.windows: dict[str, _Window] = {}
        self.out: list[Output] = []
        self.counters["grid_skipped"] = 0

    def process_into(self, record: RawRecord, out: list[Output]) -> None:
        """Handle one raw record, appending what it produces to ``out``."""
        self.out = out
        self.process(record)

    def fail(self, record: RawRecord, reason: str, out: list[Output]) -> None:
        """Dead-letter a record whose processing raised (a bug), so it is seen and counted; the books it
        touched may be half-applied, so they are invalidated (and resync).

        Safe on any record: it does not look into the frame again (parsing it may be what raised). The
        pairs it touched are those whose last applied raw offset is the record's, which the session
        sets before it changes a pair."""
        self.out = out
        self.reject(record, reason)
        for st in [st for st in self.pairs.values() if st.last_offset == record.offset
                   and st.last_partition == record.partition and st.book is not None and st.state != "invalidated"]:
            self.invalidate(st, reason, record)

    def tick(self, out: list[Output], pairs: Iterable[PairState] | None = None) -> None:
        """Staleness and stuck resyncs of ``pairs`` (default: all); call about once a second."""
        self.out = out
        now = self.clock_ns()
        stale_ns = self.settings.stale_after * 1e9
        for st in self.pairs.values() if pairs is None else pairs:
            if st.state == "live" and st.recv_ns and now - st.recv_ns > stale_ns:
                st.state = "stale"
                st.revision += 1
                self.on_state(st, "stale", "live", f"no book frames for {self.settings.stale_after:.0f} s", None)
            elif st.state in ("invalidated", "resyncing"):
                self.resync(st, "still waiting for a fresh snapshot", None)

    # -- session hooks -----------------------------------------------------------------------------

    def on_delta(self, st: PairState, delta: BookDelta, record: RawRecord) -> None:
        window = self.windows.get(st.symbol)
        if window is None:
            window = self.windows[st.symbol] = _Window()
        window.messages += 1
        if delta.checksum_ok is False:
            window.checksum_failed += 1
        elif delta.checksum_ok:
            window.checksum_ok += 1
        emit = self.clock_ns()
        recv = record.recv_ns
        if recv:
            self.latency.observe_ns(emit - recv)
            if recv > st.ts_exchange_ns:
                latency = recv - st.ts_exchange_ns
                window.latency_ns_sum += latency
                if latency > window.latency_ns_max:
                    window.latency_ns_max = latency
        self.out.append(Output("book.deltas", st.norm, BookDeltaRecord(
            EXCHANGE, st.norm, st.symbol, delta.is_snapshot, delta.bids, delta.asks, delta.checksum,
            delta.checksum_ok, st.depth, st.seq, st.epoch, st.ts_exchange_ns, recv, emit, record.partition,
            record.offset,
        )))

    def on_snapshot(self, st: PairState, record: RawRecord) -> None:
        self._snapshot_out(st, "exchange", None)
        # the grid goes on from here: boundaries before this snapshot had another book (or none)
        ts = st.ts_exchange_ns
        st.next_grid_ns = ts - ts % self.grid_ns + self.grid_ns

    def on_grid(self, st: PairState, ts_ns: int) -> None:
        """One grid snapshot per boundary crossed, quiet intervals included (the book stood still through
        them: the same levels at each); the interval's metrics once. A book quiet for longer than
        :data:`MAX_GRID_FILL` intervals gets the last ones only (``grid_skipped`` counts the rest)."""
        boundary = ts_ns - ts_ns % self.grid_ns
        if st.next_grid_ns:
            first = st.next_grid_ns
            crossed = (boundary - first) // self.grid_ns + 1
            if crossed > MAX_GRID_FILL:
                self.counters["grid_skipped"] += crossed - MAX_GRID_FILL
                first = boundary - (MAX_GRID_FILL - 1) * self.grid_ns
            for grid_ns in range(first, boundary + 1, self.grid_ns):
                self._snapshot_out(st, "grid", grid_ns)
            self._metrics_out(st)
        st.next_grid_ns = boundary + self.grid_ns

    def on_state(self, st: PairState, state: str, previous: str, reason: str, record: RawRecord | None) -> None:
        self.out.append(Output("book.events", st.norm, BookEventRecord(
            EXCHANGE, st.norm, st.symbol, state, previous, reason, st.seq, st.epoch, self.clock_ns(),
            record.partition if record else None, record.offset if record else None,
        )))

    def on_resync(self, st: PairState, reason: str) -> None:
        self.out.append(Output("control", st.symbol, ControlRecord("resync", st.symbol, reason, self.clock_ns())))

    def on_reject(self, record: RawRecord, reason: str) -> None:
        key = _text(record.key, MAX_DEADLETTER_KEY)
        self.out.append(Output("deadletter", normalize(key) if "/" in key else key, DeadLetterRecord(
            reason, _text(record.value, MAX_DEADLETTER_RAW), key, record.partition, record.offset, record.recv_ns,
        )))

    def on_subscription_error(self, record: RawRecord, ack: Ack) -> None:
        symbol = normalize(ack.symbol) if ack.symbol else None
        self.out.append(Output("metrics", symbol or "", SubscriptionErrorRecord(
            EXCHANGE, symbol, "subscription_error", ack.error, ack.method, record.partition, record.offset,
        )))

    def on_status(self, record: RawRecord, frame: StatusFrame, previous: str | None) -> None:
        self.out.append(Output("metrics", "exchange", ExchangeStatusRecord(
            EXCHANGE, "exchange", "exchange_status", frame.system, previous, frame.api_version, frame.version,
            frame.connection_id, record.recv_ns, record.partition, record.offset,
        )))

    def on_market_data(self, record: RawRecord, frame: TradeFrame | TickerFrame) -> None:
        lineage = marketdata.Lineage(record.recv_ns, record.partition, record.offset)
        out = self.out

        def emit(topic: str, key: str, value: Record, ts_ns: int | None) -> None:
            out.append(Output(topic, key, value, ts_ns // 1_000_000 if ts_ns else None))

        def market_of(symbol: str) -> marketdata.MarketState:
            st = self.state_of(symbol)
            st.revision += 1
            return st.market

        def norm_of(symbol: str) -> str:
            return self.state_of(symbol).norm

        if isinstance(frame, TradeFrame):
            emitted, missing = marketdata.trades(frame, norm_of, market_of, lineage, self.settings.whales, emit)
            self.counters["trades"] += emitted
            self.counters["trades_missing"] += missing
        else:
            marketdata.tickers(frame, norm_of, market_of, lineage, emit)

    # -- outputs -----------------------------------------------------------------------------------

    def _snapshot_out(self, st: PairState, reason: str, grid_ns: int | None) -> None:
        book = st.book
        assert book is not None
        n = self.settings.snapshot_levels
        self.out.append(Output("book.snapshots", st.norm, BookSnapshotRecord(
            EXCHANGE, st.norm, st.symbol, reason, grid_ns, st.ts_exchange_ns, book.levels("bids", n),
            book.levels("asks", n), book.checksum(), st.seq, st.epoch, st.state, st.depth,
        )))

    def _metrics_out(self, st: PairState) -> None:
        book = st.book
        assert book is not None
        bid, ask = book.best()
        spread = mid = None
        if bid and ask:
            b, a = Decimal(bid[0]), Decimal(ask[0])
            spread, mid = str(a - b), str((a + b) / 2)
        w = self.windows.pop(st.symbol, None) or _Window()
        n = w.messages
        self.out.append(Output("metrics", st.norm, BookMetricRecord(
            EXCHANGE, st.norm, "book", st.ts_exchange_ns, bid[0] if bid else None, ask[0] if ask else None, spread,
            mid, book.count("bids"), book.count("asks"), n, w.checksum_ok, w.checksum_failed, w.latency_ns_max / 1e6,
            w.latency_ns_sum / n / 1e6 if n else None,
        )))


def _text(value: bytes | None, limit: int) -> str:
    """Up to ``limit`` characters of a raw record's key or value, as text whatever its bytes."""
    text = bytes(value[: limit * 4] if value else b"").decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."

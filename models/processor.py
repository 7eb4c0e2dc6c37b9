"""Raw Kraken frames (as records of ``kraken.raw``) -> normalized book outputs. Pure: no Faust, no I/O.

The book agent feeds every record of its partitions to :meth:`BookProcessor.process` and sends the
:class:`Output` list it gets back. Per pair the processor keeps a :class:`PairState`: the L2 book, its
state, a monotonic ``seq`` (one per emitted delta), the book ``epoch`` (one per applied snapshot) and
the raw offset last applied, which makes re-processing after a crash exact: a record at or below it is
a duplicate and is skipped (re-applying an old update onto a newer, truncated book would not be).

State machine per pair (events on ``kraken.book.events``)::

    (none) --snapshot ok--> live --checksum mismatch / crossed--> invalidated -> resyncing
    resyncing --updates: discarded-- ... --fresh snapshot ok--> restored (state: live)
    live --no frames for stale_after--> stale --frames again--> live
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import orjson

from models.book import BookDelta, L2Book
from models.histogram import LatencyHistogram
from models import marketdata
from models.frames import Ack, BookData, BookFrame, InstrumentFrame, ParseError, TickerFrame, TradeFrame, parse_frame
from models.marketdata import MarketState, WhaleThresholds
from models.numbers import NumberError
from models.symbols import normalize
from models.timeutil import rfc3339_ns

EXCHANGE = "kraken"
DEFAULT_DEPTH = 10
Precision = tuple[int, int]


@dataclass(slots=True)
class RawRecord:
    """One record of ``kraken.raw``: the frame verbatim and its lineage."""

    value: bytes
    key: bytes | None
    partition: int
    offset: int
    recv_ns: int | None = None


@dataclass(slots=True)
class Output:
    """A record to produce: topic suffix (``book.deltas``), key (normalized symbol), JSON value."""

    topic: str
    key: str
    value: bytes
    timestamp_ms: int | None = None  # the Kafka record timestamp (exchange time for trades: candle windows)


@dataclass(slots=True)
class ProcessorSettings:
    snapshot_interval_ms: int = 1000
    snapshot_levels: int = 10
    stale_after: float = 15.0
    resync_min_interval: float = 5.0
    whales: WhaleThresholds = field(default_factory=WhaleThresholds)


@dataclass(slots=True)
class PairState:
    symbol: str
    norm: str
    depth: int = DEFAULT_DEPTH
    book: L2Book | None = None
    state: str = "new"
    seq: int = 0
    epoch: int = 0
    last_partition: int = -1
    last_offset: int = -1
    ts_exchange_ns: int = 0
    recv_ns: int = 0
    next_grid_ns: int = 0
    last_resync_ns: int = 0
    # since the last metric event
    messages: int = 0
    checksum_ok: int = 0
    checksum_failed: int = 0
    latency_ns_max: int = 0
    latency_ns_sum: int = 0
    # for the store: (side 0 bids / 1 asks, price, qty) applied since the last flush, or a full
    # rewrite after a snapshot or a precision change
    pending: list[tuple[int, str, str]] = field(default_factory=list)
    rewrite: bool = False
    changed: bool = False
    market: MarketState = field(default_factory=MarketState)
    # cumulative, for metrics (since this worker took the pair)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("frames", "snapshots", "updates", "checksum_ok", "checksum_failed", "resyncs"), 0))


class BookProcessor:
    """All pairs of the partitions one worker owns."""

    def __init__(
        self, settings: ProcessorSettings, precision_of: Callable[[str], Precision | None] = lambda s: None,
        restore: Callable[[str], PairState | None] = lambda s: None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.settings = settings
        self.precision_of = precision_of
        self.restore = restore
        self.clock_ns = clock_ns
        self.pairs: dict[str, PairState] = {}
        self.precisions: dict[str, Precision] = {}
        self.grid_ns = settings.snapshot_interval_ms * 1_000_000
        self.counters = {"frames": 0, "deadletter": 0, "duplicates": 0, "discarded": 0, "resyncs": 0, "trades": 0}
        self.latency = LatencyHistogram()

    # -- entry point -------------------------------------------------------------------------------

    def process(self, record: RawRecord, out: list[Output]) -> None:
        """Handle one raw record, appending what it produces to ``out``."""
        self.counters["frames"] += 1
        frame = parse_frame(record.value)
        if isinstance(frame, ParseError):
            self._deadletter(record, frame.reason, out)
        elif isinstance(frame, BookFrame):
            for data in frame.books:
                self._book(record, frame.is_snapshot, data, out)
        elif isinstance(frame, InstrumentFrame):
            for pair in frame.pairs:
                self.set_precision(pair.symbol, (pair.price_precision, pair.qty_precision), record, out)
        elif isinstance(frame, Ack):
            self._ack(record, frame, out)
        elif isinstance(frame, (TradeFrame, TickerFrame)):
            self._market_data(record, frame, out)

    def _duplicate(self, st: PairState, record: RawRecord) -> bool:
        """True for a record at or below the pair's last applied offset (replayed after a crash)."""
        if record.partition == st.last_partition and record.offset <= st.last_offset:
            self.counters["duplicates"] += 1
            return True
        st.last_partition, st.last_offset = record.partition, record.offset
        return False

    def _market_data(self, record: RawRecord, frame: TradeFrame | TickerFrame, out: list[Output]) -> None:
        items = frame.trades if isinstance(frame, TradeFrame) else frame.tickers
        symbols = {item.symbol for item in items}
        if any(self._duplicate(self.state_of(symbol), record) for symbol in symbols):
            return
        lineage = {"ts_recv_ns": record.recv_ns, "raw_partition": record.partition, "raw_offset": record.offset}

        def emit(topic: str, key: str, value: dict[str, object]) -> None:
            ts = value.get("ts_exchange_ns")
            out.append(Output(topic, key, orjson.dumps(value), ts // 1_000_000 if isinstance(ts, int) else None))

        def market_of(symbol: str) -> MarketState:
            st = self.state_of(symbol)
            st.changed = True
            return st.market

        def norm_of(symbol: str) -> str:
            return self.state_of(symbol).norm

        if isinstance(frame, TradeFrame):
            self.counters["trades"] += marketdata.trades(frame, norm_of, market_of, lineage, self.settings.whales, emit)
        else:
            marketdata.tickers(frame, norm_of, market_of, lineage, record.recv_ns, emit)

    def fail(self, record: RawRecord, reason: str, out: list[Output]) -> None:
        """Dead-letter a record whose processing raised (a bug), so it is seen and counted."""
        self._deadletter(record, reason, out)

    def state_of(self, symbol: str) -> PairState:
        state = self.pairs.get(symbol)
        if state is None:
            state = self.restore(symbol) or PairState(symbol, normalize(symbol))
            self.pairs[symbol] = state
        return state

    # -- books -------------------------------------------------------------------------------------

    def _book(self, record: RawRecord, is_snapshot: bool, data: BookData, out: list[Output]) -> None:
        st = self.state_of(data.symbol)
        if self._duplicate(st, record):  # already applied before a restart: skipping keeps it exact
            return
        st.counters["frames"] += 1
        ts = rfc3339_ns(data.timestamp) or record.recv_ns or self.clock_ns()
        if st.book is not None and st.state in ("live", "stale") and ts >= st.next_grid_ns:
            if st.next_grid_ns:
                self._snapshot_out(st, "grid", ts - ts % self.grid_ns, out)
                self._metrics_out(st, out)
            st.next_grid_ns = ts - ts % self.grid_ns + self.grid_ns
        recv = record.recv_ns or 0
        st.ts_exchange_ns, st.recv_ns = ts, recv
        if recv and ts and recv > ts:
            latency = recv - ts
            st.latency_ns_sum += latency
            st.latency_ns_max = max(st.latency_ns_max, latency)
        if is_snapshot:
            self._apply_snapshot(st, record, data, out)
        elif st.book is None or st.state in ("invalidated", "resyncing"):
            self.counters["discarded"] += 1
            if st.book is None and st.state == "new":
                self._deadletter(record, "update before any snapshot for this pair; resync requested", out)
                self._resync(st, "no snapshot", record, out)
        else:
            self._apply_update(st, record, data, out)

    def _apply_snapshot(self, st: PairState, record: RawRecord, data: BookData, out: list[Output]) -> None:
        precision = self.precisions.get(st.symbol) or self.precision_of(st.symbol)
        st.book = L2Book(st.symbol, st.depth, precision)
        try:
            delta = st.book.apply_snapshot(data.bids, data.asks, data.checksum)
        except NumberError as exc:
            st.book = None
            self._deadletter(record, f"snapshot not applicable: {exc}", out)
            self._invalidate(st, str(exc), record, out)
            return
        st.epoch += 1
        st.counters["snapshots"] += 1
        st.rewrite = st.changed = True
        st.pending.clear()
        self._delta_out(st, delta, record, out)
        if delta.checksum_ok is False or delta.crossed:
            self._invalidate(st, self._why(delta), record, out)
            return
        previous = st.state
        if previous in ("invalidated", "resyncing"):
            self._event(st, "restored", previous, "fresh snapshot verified", record, out)
        elif previous != "live":
            self._event(st, "live", previous, "snapshot verified", record, out)
        st.state = "live"
        self._snapshot_out(st, "exchange", None, out)

    def _apply_update(self, st: PairState, record: RawRecord, data: BookData, out: list[Output]) -> None:
        book = st.book
        assert book is not None
        try:
            delta = book.apply_update(data.bids, data.asks, data.checksum)
        except NumberError as exc:
            self._deadletter(record, f"update not applicable: {exc}", out)
            self._invalidate(st, str(exc), record, out)
            return
        st.changed = True
        st.counters["updates"] += 1
        if not st.rewrite:
            pending = st.pending
            for price, qty in delta.bids:
                pending.append((0, price, qty))
            for price, qty in delta.asks:
                pending.append((1, price, qty))
        self._delta_out(st, delta, record, out)
        if st.state == "stale":
            self._event(st, "live", "stale", "frames flow again", record, out)
            st.state = "live"
        if delta.checksum_ok is False or delta.crossed:
            self._invalidate(st, self._why(delta), record, out)

    @staticmethod
    def _why(delta: BookDelta) -> str:
        if delta.checksum_ok is False:
            return f"checksum mismatch: expected {delta.expected_checksum}, computed {delta.checksum}"
        return "crossed book: best bid at or above best ask"

    def _invalidate(self, st: PairState, reason: str, record: RawRecord | None, out: list[Output]) -> None:
        previous = st.state
        st.state = "invalidated"
        self._event(st, "invalidated", previous, reason, record, out)
        self._resync(st, reason, record, out)

    def _resync(self, st: PairState, reason: str, record: RawRecord | None, out: list[Output]) -> None:
        now = self.clock_ns()
        if now - st.last_resync_ns < self.settings.resync_min_interval * 1e9:
            return
        st.last_resync_ns = now
        self.counters["resyncs"] += 1
        st.counters["resyncs"] += 1
        out.append(Output("control", st.symbol, orjson.dumps(
            {"action": "resync", "symbol": st.symbol, "reason": reason, "ts_ns": now})))
        if st.state == "invalidated":
            st.state = "resyncing"
            self._event(st, "resyncing", "invalidated", reason, record, out)

    def _ack(self, record: RawRecord, ack: Ack, out: list[Output]) -> None:
        if ack.channel != "book" or not ack.symbol:
            if not ack.success:
                self._metric_error(record, ack, out)
            return
        if ack.success and ack.method == "subscribe" and ack.depth:
            self.state_of(ack.symbol).depth = ack.depth
        elif not ack.success:
            self._metric_error(record, ack, out)

    def set_precision(self, symbol: str, precision: Precision, record: RawRecord | None, out: list[Output]) -> None:
        """An instrument frame's precision: honoured by live books (re-keyed exactly)."""
        if self.precisions.get(symbol) == precision:
            return
        self.precisions[symbol] = precision
        st = self.pairs.get(symbol)
        if st is not None and st.book is not None and st.book.precision != precision:
            try:
                st.book.set_precision(precision)
                st.rewrite = st.changed = True
            except NumberError as exc:
                self._invalidate(st, f"precision change not representable: {exc}", record, out)

    # -- periodic ----------------------------------------------------------------------------------

    def tick(self, out: list[Output]) -> None:
        """Staleness and stuck resyncs; call about once a second."""
        now = self.clock_ns()
        stale_ns = self.settings.stale_after * 1e9
        for st in self.pairs.values():
            if st.state == "live" and st.recv_ns and now - st.recv_ns > stale_ns:
                st.state = "stale"
                self._event(st, "stale", "live", f"no book frames for {self.settings.stale_after:.0f} s", None, out)
            elif st.state in ("invalidated", "resyncing"):
                self._resync(st, "still waiting for a fresh snapshot", None, out)

    # -- outputs -----------------------------------------------------------------------------------

    def _delta_out(self, st: PairState, delta: BookDelta, record: RawRecord, out: list[Output]) -> None:
        st.seq += 1
        st.messages += 1
        if delta.checksum_ok is False:
            st.checksum_failed += 1
            st.counters["checksum_failed"] += 1
        elif delta.checksum_ok:
            st.checksum_ok += 1
            st.counters["checksum_ok"] += 1
        emit = self.clock_ns()
        if record.recv_ns:
            self.latency.observe_ns(emit - record.recv_ns)
        out.append(Output("book.deltas", st.norm, orjson.dumps({
            "exchange": EXCHANGE, "symbol": st.norm, "exchange_symbol": st.symbol,
            "is_snapshot": delta.is_snapshot, "bids": delta.bids, "asks": delta.asks,
            "checksum": delta.checksum, "checksum_ok": delta.checksum_ok, "depth": st.depth,
            "seq": st.seq, "epoch": st.epoch, "ts_exchange_ns": st.ts_exchange_ns, "ts_recv_ns": record.recv_ns,
            "ts_emit_ns": emit, "raw_partition": record.partition, "raw_offset": record.offset,
        })))

    def _snapshot_out(self, st: PairState, reason: str, grid_ns: int | None, out: list[Output]) -> None:
        book = st.book
        assert book is not None
        n = self.settings.snapshot_levels
        out.append(Output("book.snapshots", st.norm, orjson.dumps({
            "exchange": EXCHANGE, "symbol": st.norm, "exchange_symbol": st.symbol, "reason": reason,
            "ts_grid_ns": grid_ns, "ts_exchange_ns": st.ts_exchange_ns, "bids": book.levels("bids", n),
            "asks": book.levels("asks", n), "checksum": book.checksum(), "seq": st.seq, "epoch": st.epoch,
            "state": st.state, "depth": st.depth,
        })))

    def _metrics_out(self, st: PairState, out: list[Output]) -> None:
        book = st.book
        assert book is not None
        bid, ask = book.best()
        spread = mid = None
        if bid and ask:
            b, a = Decimal(bid[0]), Decimal(ask[0])
            spread, mid = str(a - b), str((a + b) / 2)
        n = st.messages
        out.append(Output("metrics", st.norm, orjson.dumps({
            "exchange": EXCHANGE, "symbol": st.norm, "metric": "book", "ts_exchange_ns": st.ts_exchange_ns,
            "best_bid": bid[0] if bid else None, "best_ask": ask[0] if ask else None, "spread": spread,
            "mid": mid, "bid_levels": len(book.bids), "ask_levels": len(book.asks), "messages": n,
            "checksum_ok": st.checksum_ok, "checksum_failed": st.checksum_failed,
            "latency_ms_max": st.latency_ns_max / 1e6, "latency_ms_mean": st.latency_ns_sum / n / 1e6 if n else None,
        })))
        st.messages = st.checksum_ok = st.checksum_failed = st.latency_ns_max = st.latency_ns_sum = 0

    def _metric_error(self, record: RawRecord, ack: Ack, out: list[Output]) -> None:
        symbol = ack.symbol or ""
        out.append(Output("metrics", normalize(symbol) if symbol else "", orjson.dumps({
            "exchange": EXCHANGE, "symbol": normalize(symbol) if symbol else None, "metric": "subscription_error",
            "error": ack.error, "method": ack.method, "raw_partition": record.partition, "raw_offset": record.offset,
        })))

    def _event(self, st: PairState, state: str, previous: str, reason: str, record: RawRecord | None,
               out: list[Output]) -> None:
        out.append(Output("book.events", st.norm, orjson.dumps({
            "exchange": EXCHANGE, "symbol": st.norm, "exchange_symbol": st.symbol, "state": state,
            "previous": previous, "reason": reason, "seq": st.seq, "epoch": st.epoch, "ts_ns": self.clock_ns(),
            "raw_partition": record.partition if record else None, "raw_offset": record.offset if record else None,
        })))

    def _deadletter(self, record: RawRecord, reason: str, out: list[Output]) -> None:
        self.counters["deadletter"] += 1
        key = (record.key or b"").decode("utf-8", "replace")
        out.append(Output("deadletter", normalize(key) if "/" in key else key, orjson.dumps({
            "reason": reason, "raw": record.value.decode("utf-8", "replace"), "raw_key": key,
            "raw_partition": record.partition, "raw_offset": record.offset, "ts_recv_ns": record.recv_ns,
        })))

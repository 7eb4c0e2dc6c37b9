"""The book session: every pair's L2 book for one stream of Kraken frames. Pure: no Faust, no I/O.

One engine serves everyone who rebuilds books from frames: the worker's processor
(:class:`~models.processor.BookProcessor` adds the output records), ``krakenflow verify``, the
simulator's test client and ``bench/book_engine.py``. Per pair it keeps a :class:`PairState`: the book,
its state, a monotonic ``seq`` (one per applied message), the book ``epoch`` (one per applied snapshot: its exchange time in ms, never repeating)
and the raw offset last applied, which makes re-processing exact: a record at or below it is a
duplicate and is skipped (re-applying an old update onto a newer, truncated book would not be).

State machine per pair::

    (none) --snapshot ok--> live --checksum mismatch / crossed--> invalidated -> resyncing
    resyncing --updates: discarded-- ... --fresh snapshot ok--> restored (state: live)
    live --no frames for stale_after--> stale --frames again--> live

What happens on each transition is a hook (``on_delta``, ``on_state``, ``on_reject``, ``on_resync``):
no-ops here, outputs in the processor, checksum tallies in the verifier.

Who may change a book (each refusal is a dead letter with its reason, and counted):

* **the live ingest only** (``require_lock_gen``): a frame without the ``lock_gen`` of the ingest
  election is ``unauthenticated`` (``always``; ``seen``: once its raw partition has carried one; ``never``:
  captures and replays), one of an older generation than the partition's newest is ``fenced``;
* **under its own key**: a pair frame must be keyed by its pair (``misfiled`` otherwise): under another
  key it lands on another partition, another worker, and would make a second book of the pair;
* **not against its verified book**: an instrument precision after which the pair's checksums fail while
  its last verified precision still verifies is *suspect*: the old precision stays (the pair resyncs
  once), and the same precision offered again is refused (``suspect instrument``), never looped on. A
  book built before its pair's precision was known verified at the decimals as sent: that counts as its
  verified precision too (a forged first precision would otherwise have nothing to be checked against).

Nothing a frame holds makes :meth:`BookSession.process` raise: the parser refuses what cannot be typed,
and every number, string and time that reaches a book or an output record is bounded there or here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from models.book import BookDelta, L2Book, new_book
from models.kraken.frames import (
    MAX_PRECISION,
    Ack,
    BookData,
    BookFrame,
    InstrumentFrame,
    ParseError,
    StatusFrame,
    TickerFrame,
    TradeFrame,
    parse_frame,
)
from models.kraken.messages import Frame
from models.marketdata import MarketState
from models.numbers import NumberError
from models.symbols import normalize
from models.timeutil import rfc3339_ns

DEFAULT_DEPTH = 10
Precision = tuple[int, int]
#: ``require_lock_gen``: whether a frame without a lock generation may change anything
LOCK_GEN_RULES = ("always", "seen", "never")
#: integer nanoseconds an output record can hold (orjson writes 64-bit integers): up to 2262
_MAX_NS = 1 << 63
#: a Kafka consumer group generation (int32; -1 before the first)
_GENERATIONS = range(-1, 1 << 31)
#: longest dead-letter reason: hostile values are quoted in reasons
MAX_REASON_CHARS = 1000


@dataclass(slots=True)
class RawRecord:
    """One record of ``kraken.raw`` (or one line of a capture): the frame verbatim and its lineage."""

    value: bytes
    key: bytes | None
    partition: int
    offset: int
    recv_ns: int | None = None
    #: the ingest election's generation the frame was written in (None: replay, capture)
    lock_gen: int | None = None
    #: the ``prec`` header (:func:`precision_stamp`): the precision the writer knew for the frame's pair
    #: (None: a writer that stamps none, such as a capture read directly or an older ingest)
    stamp: bytes | None = None


#: the ``kraken.raw`` header in which the ingest stamps a pair frame with the pair's instrument precision.
#: Instrument frames come on the connection's partition, books on their pair's: a worker that took its
#: precisions from the instrument frames it had processed would format a book by the order it happened to
#: fetch two partitions in, so a redo of an aborted transaction could differ from the aborted deltas a
#: ``read_uncommitted`` reader kept. A stamp travels with the frame it formats.
PRECISION_HEADER = "prec"
_STAMPS: dict[bytes, Precision] = {}


def precision_stamp(precision: Precision | None) -> bytes:
    """The ``prec`` header of a pair frame: ``b"2,8"`` (price, qty decimals), ``b""`` when the writer knows
    none yet. On an instrument frame, any ``prec`` header says the writer stamps its pair frames."""
    return b"" if precision is None else f"{precision[0]},{precision[1]}".encode()


def stamped_precision(stamp: bytes) -> Precision | None:
    """The precision a ``prec`` header names (None: the writer knew none); ValueError for anything else."""
    precision = _STAMPS.get(stamp)
    if precision is not None or not stamp:
        return precision
    price, _, qty = stamp.partition(b",")
    if not (price.isdigit() and qty.isdigit() and len(stamp) <= 5 and int(price) <= MAX_PRECISION
            and int(qty) <= MAX_PRECISION):
        raise ValueError(f"prec header {stamp[:40]!r} is not two decimal counts up to {MAX_PRECISION} such as "
                         "b'2,8' (the ingest writes it)")
    precision = _STAMPS[stamp] = (int(price), int(qty))
    return precision


@dataclass(slots=True)
class PairState:
    """One pair's book and where its stream stands. ``revision`` grows with every change (the store
    writes a pair whose revision moved)."""

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
    revision: int = 0
    market: MarketState = field(default_factory=MarketState)
    # cumulative, for metrics (since this worker started; carried over when the pair is forgotten and
    # restored, so a Prometheus counter never falls back); plain ints: they count every message
    frames: int = 0
    snapshots: int = 0
    updates: int = 0
    checksums_ok: int = 0
    checksums_failed: int = 0
    resyncs: int = 0
    #: the instrument precision the book last verified a snapshot at (None: not known on this worker)
    verified_precision: Precision | None = None
    #: the book last verified at the decimals as sent, before its pair's precision was known
    verified_as_sent: bool = False
    #: its book frames carry the live ingest's precision stamp: they set its precision, instrument frames do not
    stamped: bool = False

    def mark_verified(self) -> None:
        """The book's checksum verified: its precision (or the decimals as sent) is the one to keep."""
        if self.book is not None:
            self.verified_precision = self.book.precision
            self.verified_as_sent = self.book.precision is None

    @property
    def knows_verified(self) -> bool:
        return self.verified_precision is not None or self.verified_as_sent


#: the per-pair metric counters of :class:`PairState`
PAIR_COUNTERS = ("frames", "snapshots", "updates", "checksums_ok", "checksums_failed", "resyncs")


class BookSession:
    """Books, depths and precisions for one stream of frames (a worker's partitions, or a capture)."""

    def __init__(
        self, precision_of: Callable[[str], Precision | None] = lambda s: None,
        restore: Callable[[str], PairState | None] = lambda s: None,
        clock_ns: Callable[[], int] = time.time_ns, resync_min_interval: float = 5.0,
        subscribed: Iterable[str] | None = None, depth: int | None = None, require_lock_gen: str = "never",
    ) -> None:
        if require_lock_gen not in LOCK_GEN_RULES:
            raise ValueError(f"require_lock_gen={require_lock_gen!r}; use one of {LOCK_GEN_RULES}")
        #: whether a frame without a lock generation may change books, depths, precisions (see the module)
        self.require_lock_gen = require_lock_gen
        #: the pairs and book depth the cluster subscribes (None: anything, as in a capture): frames of
        #: other pairs, and acks that contradict the subscription, are refused, never turned into books
        self.subscribed = frozenset(subscribed) if subscribed is not None else None
        self.depth = depth
        self.precision_of = precision_of
        self.restore = restore
        self.clock_ns = clock_ns
        self.resync_min_interval_ns = int(resync_min_interval * 1e9)
        self.pairs: dict[str, PairState] = {}
        self._carried: dict[str, tuple[int, ...]] = {}  # metric counters of forgotten pairs
        self.precisions: dict[str, Precision] = {}
        self.counters = {"frames": 0, "deadletter": 0, "duplicates": 0, "discarded": 0, "resyncs": 0, "trades": 0,
                         "trades_missing": 0,
                         "fenced": 0, "unauthenticated": 0, "misfiled": 0, "instrument_conflicts": 0}
        self.system: str | None = None  # Kraken's last reported system status (online, maintenance, ...)
        #: newest ingest lock generation seen per raw partition (frames of an older one are refused)
        self.lock_generations: dict[int, int] = {}
        #: per pair, an instrument precision that broke its verified book (offered again: refused)
        self.suspect_precisions: dict[str, Precision] = {}

    # -- hooks -------------------------------------------------------------------------------------

    def on_delta(self, st: PairState, delta: BookDelta, record: RawRecord) -> None:
        """A book message was applied (``st.seq`` already counts it)."""

    def on_state(self, st: PairState, state: str, previous: str, reason: str, record: RawRecord | None) -> None:
        """The pair's book changed state."""

    def on_reject(self, record: RawRecord, reason: str) -> None:
        """A record (or one pair message of it) could not be used."""

    def on_resync(self, st: PairState, reason: str) -> None:
        """The pair needs a fresh snapshot (rate-limited per pair)."""

    def on_snapshot(self, st: PairState, record: RawRecord) -> None:
        """A snapshot was applied and verified; the book is live."""

    def on_grid(self, st: PairState, ts_ns: int) -> None:
        """A live book crossed its next grid boundary (``st.next_grid_ns``) at exchange time ``ts_ns``;
        set the next one. This session keeps no grid."""
        st.next_grid_ns = 1 << 62

    def on_market_data(self, record: RawRecord, frame: TradeFrame | TickerFrame) -> None:
        """A trade or ticker frame that is not a duplicate."""

    def on_subscription_error(self, record: RawRecord, ack: Ack) -> None:
        """Kraken refused a request."""

    def on_status(self, record: RawRecord, frame: StatusFrame, previous: str | None) -> None:
        """Kraken's ``status`` channel reported another ``system`` than the last one seen."""

    # -- entry points ------------------------------------------------------------------------------

    def process(self, record: RawRecord) -> None:
        """Handle one raw record; never raises on what the record holds."""
        self.counters["frames"] += 1
        recv = record.recv_ns
        if recv is not None and not 0 <= recv < _MAX_NS:
            record.recv_ns = None  # a forged header: no output record could hold it
        if record.lock_gen is not None:
            if not self._current_ingest(record):
                return
            self.on_frame(record, parse_frame(record.value))
            return
        frame = parse_frame(record.value)
        # what does not parse is refused for that (the more useful reason) whoever wrote it
        if self.require_lock_gen != "never" and not isinstance(frame, ParseError) and \
                (self.require_lock_gen == "always" or record.partition in self.lock_generations):
            self.counters["unauthenticated"] += 1
            self.reject(record, "unauthenticated: the frame carries no lock_gen header, so it was not written by "
                                "the live ingest; only the live ingest's frames may change books, depths, precisions "
                                "or subscriptions (KRAKENFLOW_REQUIRE_LOCK_GEN)")
            return
        self.on_frame(record, frame)

    def on_frame(self, record: RawRecord, frame: Frame | ParseError) -> None:
        """Handle one parsed frame (a caller that parsed already, such as the simulator's test client)."""
        if isinstance(frame, BookFrame):
            key = record.key
            if key is not None or self.subscribed is not None:
                for data in frame.books:
                    if key != data.symbol.encode("utf-8", "replace"):
                        self._misfiled(record, "book frame", data.symbol)
                        return
            for data in frame.books:
                self._book(record, frame.is_snapshot, data)
        elif isinstance(frame, ParseError):
            self.reject(record, frame.reason)
        elif isinstance(frame, InstrumentFrame):
            stamping = record.stamp is not None
            refused = [why for pair in frame.pairs
                       if (why := self.set_precision(pair.symbol, (pair.price_precision, pair.qty_precision),
                                                     stamping))]
            if refused:  # one dead letter per frame, however many of its pairs were refused
                self.reject(record, "; ".join(refused))
        elif isinstance(frame, Ack):
            self._ack(record, frame)
        elif isinstance(frame, StatusFrame):
            if frame.system != self.system:
                previous, self.system = self.system, frame.system
                self.on_status(record, frame, previous)
        elif isinstance(frame, (TradeFrame, TickerFrame)):
            items = frame.trades if isinstance(frame, TradeFrame) else frame.tickers
            kind = "trade frame" if isinstance(frame, TradeFrame) else "ticker frame"
            symbols = {i.symbol for i in items}
            key = record.key
            misfiled = [s for s in sorted(symbols) if key != s.encode("utf-8", "replace")] \
                if key is not None or self.subscribed is not None else []
            if misfiled:
                self._misfiled(record, kind, misfiled[0])
            elif self.subscribed is not None and not symbols <= self.subscribed:
                self.reject(record, f"{kind} for {', '.join(sorted(symbols - self.subscribed))}, not subscribed by "
                                    "this cluster (KRAKENFLOW_PAIRS)")
            elif not any([self._duplicate(self.state_of(symbol), record) for symbol in symbols]):
                self.on_market_data(record, frame)

    def _current_ingest(self, record: RawRecord) -> bool:
        """False (and the record refused) when a newer ingest generation has written this partition."""
        generation = record.lock_gen
        assert generation is not None
        if generation not in _GENERATIONS:  # it would fence every real frame after it
            self.counters["unauthenticated"] += 1
            self.reject(record, f"unauthenticated: lock_gen {generation} is no generation of the ingest election "
                                "(a Kafka consumer group generation)")
            return False
        newest = self.lock_generations.get(record.partition, -1)
        if generation < newest:
            self.counters["fenced"] += 1
            self.reject(record, f"fenced: written by an ingest of lock generation {generation} after the ingest "
                                f"of generation {newest} took over")
            return False
        if generation > newest:
            self.lock_generations[record.partition] = generation
        return True

    def reject(self, record: RawRecord, reason: str) -> None:
        self.counters["deadletter"] += 1
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[:MAX_REASON_CHARS] + "..."
        # a symbol decoded from a hostile frame may hold a lone surrogate, which no JSON writer takes
        self.on_reject(record, reason.encode("utf-8", "replace").decode())

    def _misfiled(self, record: RawRecord, what: str, symbol: str) -> None:
        self.counters["misfiled"] += 1
        key = "no key" if record.key is None else f"the key {record.key[:80]!r}"
        self.reject(record, f"misfiled: {what} for {symbol} under {key}; the ingest keys every pair frame by its "
                            "pair, and under another key it lands on another partition, where it would make a "
                            "second book of the pair")

    def state_of(self, symbol: str) -> PairState:
        state = self.pairs.get(symbol)
        if state is None:
            state = self.restore(symbol) or PairState(symbol, normalize(symbol))
            carried = self._carried.pop(symbol, None)
            if carried:
                for name, value in zip(PAIR_COUNTERS, carried, strict=True):
                    setattr(state, name, value)
            self.pairs[symbol] = state
        return state

    def forget(self, symbols: list[str] | None = None) -> None:
        """Drop pairs (default: all) so they are restored from the store when next seen; their metric
        counters carry over."""
        for symbol in list(self.pairs) if symbols is None else symbols:
            st = self.pairs.pop(symbol)
            self._carried[symbol] = tuple(getattr(st, name) for name in PAIR_COUNTERS)

    def _duplicate(self, st: PairState, record: RawRecord) -> bool:
        """True for a record at or below the pair's last applied offset (replayed after a crash)."""
        if record.partition == st.last_partition and record.offset <= st.last_offset:
            self.counters["duplicates"] += 1
            return True
        st.last_partition, st.last_offset = record.partition, record.offset
        return False

    # -- books -------------------------------------------------------------------------------------

    def _book(self, record: RawRecord, is_snapshot: bool, data: BookData) -> None:
        # the hot path: one call per book message, updates of a live book inline
        if self.subscribed is not None and data.symbol not in self.subscribed:
            self.reject(record, f"book frame for {data.symbol}, not subscribed by this cluster (KRAKENFLOW_PAIRS)")
            return
        st = self.state_of(data.symbol)
        if self._duplicate(st, record):  # already applied before a restart: skipping keeps it exact
            return
        ts = rfc3339_ns(data.timestamp) or record.recv_ns or self.clock_ns()
        if not 0 <= ts < _MAX_NS:  # Kraken's own times are the 2020s: this one no record could hold
            self.reject(record, f"book message for {data.symbol} has timestamp {(data.timestamp or '')[:40]!r}, "
                                "not a time between 1970 and 2262")
            return
        st.frames += 1
        stamp, stamped = record.stamp, None
        if stamp is not None:
            try:
                stamped = stamped_precision(stamp)
            except ValueError as exc:
                self.reject(record, f"book message for {data.symbol}: {exc}")
                return
            st.stamped = True
            if stamped is not None and self.precisions.get(st.symbol) != stamped \
                    and stamped != self.suspect_precisions.get(st.symbol):
                self.precisions[st.symbol] = stamped  # the instruments table follows the stamps
            if not is_snapshot and stamped is not None and st.book is not None and st.book.precision != stamped \
                    and not self._restamp(st, stamped, record):
                return
        book = st.book
        if ts >= st.next_grid_ns and book is not None and st.state in ("live", "stale"):
            self.on_grid(st, ts)
        st.ts_exchange_ns, st.recv_ns = ts, record.recv_ns or 0
        if is_snapshot:
            if stamp is None:
                precision = self.precisions.get(st.symbol) or self.precision_of(st.symbol)
            else:  # a writer that knew none keeps the pair's own: never another partition's
                precision = stamped if stamped is not None or st.book is None else st.book.precision
            self._apply_snapshot(st, record, data, precision)
            return
        if book is None or st.state in ("invalidated", "resyncing"):
            self.counters["discarded"] += 1
            if book is None and st.state == "new":
                self.reject(record, "update before any snapshot for this pair; resync requested")
                self.resync(st, "no snapshot", record)
            return
        try:
            delta = book.apply_update(data.bids, data.asks, data.checksum)
        except NumberError as exc:
            self.reject(record, f"update not applicable: {exc}")
            self.invalidate(st, str(exc), record)
            return
        st.updates += 1
        self._applied(st, delta, record)
        if st.state == "stale":
            st.state = "live"
            self.on_state(st, "live", "stale", "frames flow again", record)
        if delta.checksum_ok is False:
            self.invalidate(st, self._update_conflict(st, book, data.checksum) or _why(delta), record)
        elif delta.crossed:
            self.invalidate(st, _why(delta), record)
        elif delta.checksum_ok and st.verified_precision != book.precision:
            st.mark_verified()  # a precision change the checksums confirm: the one to keep from now on

    def _apply_snapshot(self, st: PairState, record: RawRecord, data: BookData, precision: Precision | None) -> None:
        if precision is not None and precision == self.suspect_precisions.get(st.symbol):
            precision = None  # exposed as forged here; the instruments table may not have healed yet
        if not st.knows_verified and st.book is not None and st.state in ("live", "stale"):
            st.mark_verified()  # a book restored live was verified at its precision
        st.book = new_book(st.symbol, st.depth, precision)
        st.revision += 1
        try:
            delta: BookDelta | None = st.book.apply_snapshot(data.bids, data.asks, data.checksum)
        except NumberError as exc:
            delta, error = None, exc
        if delta is None or delta.checksum_ok is False:
            kept = self._snapshot_conflict(st, data, precision)
            if kept is not None:
                st.book, delta = kept
        if delta is None:
            st.book = None
            self.reject(record, f"snapshot not applicable: {error}")
            self.invalidate(st, str(error), record)
            return
        if delta.checksum_ok:
            st.mark_verified()
        # the snapshot's exchange time in ms (or one more than the last epoch): an epoch never repeats, not
        # even when a pair's state is rebuilt from nothing, so (symbol, epoch, seq) names one delta for good
        st.epoch = max(st.epoch + 1, st.ts_exchange_ns // 1_000_000)
        st.snapshots += 1
        self._applied(st, delta, record)
        if delta.checksum_ok is False or delta.crossed:
            self.invalidate(st, _why(delta), record)
            return
        previous = st.state
        st.state = "live"
        if previous in ("invalidated", "resyncing"):
            self.on_state(st, "restored", previous, "fresh snapshot verified", record)
        elif previous != "live":
            self.on_state(st, "live", previous, "snapshot verified", record)
        self.on_snapshot(st, record)

    def _applied(self, st: PairState, delta: BookDelta, record: RawRecord) -> None:
        """A book message applied: count it (``seq``, checksums) and hand it to :meth:`on_delta`."""
        st.seq += 1
        st.revision += 1
        if delta.checksum_ok:
            st.checksums_ok += 1
        elif delta.checksum_ok is False:
            st.checksums_failed += 1
        self.on_delta(st, delta, record)

    def invalidate(self, st: PairState, reason: str, record: RawRecord | None) -> None:
        previous = st.state
        st.state = "invalidated"
        st.revision += 1
        self.on_state(st, "invalidated", previous, reason, record)
        self.resync(st, reason, record)

    def resync(self, st: PairState, reason: str, record: RawRecord | None) -> None:
        now = self.clock_ns()
        if now - st.last_resync_ns < self.resync_min_interval_ns:
            return
        st.last_resync_ns = now
        self.counters["resyncs"] += 1
        st.resyncs += 1
        self.on_resync(st, reason)
        if st.state == "invalidated":
            st.state = "resyncing"
            self.on_state(st, "resyncing", "invalidated", reason, record)

    def _ack(self, record: RawRecord, ack: Ack) -> None:
        if not ack.success:
            self.on_subscription_error(record, ack)
        elif ack.channel == "book" and ack.symbol and ack.method == "subscribe" and ack.depth:
            if self.subscribed is not None and ack.symbol not in self.subscribed:
                self.reject(record, f"book subscription ack for {ack.symbol}, not subscribed by this cluster")
                return
            key = record.key
            if (key is not None or self.subscribed is not None) and key != ack.symbol.encode("utf-8", "replace"):
                self._misfiled(record, "book subscription ack", ack.symbol)
                return
            st = self.state_of(ack.symbol)
            if (self.depth is not None and ack.depth != self.depth and record.lock_gen is not None
                    and st.book is not None and st.state == "live"):
                # a live book's depth changes only with a new subscription, which the live ingest (its frames
                # carry a lock generation) makes at the cluster's depth; a replayed capture may have another
                self.reject(record, f"book subscription ack for {ack.symbol} at depth {ack.depth} contradicts the "
                                    f"cluster's depth {self.depth} (KRAKENFLOW_DEPTH) of its live book")
                return
            st.depth = ack.depth
            st.revision += 1
            if st.last_partition < 0 and record.key == ack.symbol.encode():
                # the store files a pair under its partition: without it, a depth learnt before the
                # pair's first book frame would not be stored, and a restart would fall back to the default
                st.last_partition = record.partition

    def set_precision(self, symbol: str, precision: Precision, stamping: bool = False) -> str | None:
        """An instrument frame's precision (``stamping``: from a writer that stamps its pair frames): honoured
        by live books (re-keyed exactly) whose frames carry no stamp. Returns why it was refused, if it was."""
        if self.precisions.get(symbol) == precision:
            return None
        if self.suspect_precisions.get(symbol) == precision:
            self.counters["instrument_conflicts"] += 1
            return (f"suspect instrument: precision {precision} for {symbol} broke its verified book before (its "
                    "checksums failed while the previous precision verified them); refused again")
        st = self.pairs.get(symbol)
        if st is not None and st.stamped:
            # its precision comes with its frames, in its partition's order: the live ingest's instrument
            # frames bring nothing more, and one without the stamp header contradicts the live ingest
            if stamping:
                return None
            self.counters["instrument_conflicts"] += 1
            known = self.precisions.get(symbol)
            return (f"instrument precision {precision} for {symbol} contradicts "
                    f"{'the decimals as sent' if known is None else known}, which the live ingest stamps on its "
                    "frames (the prec header); refused")
        if st is not None and st.book is not None and st.book.precision != precision:
            error = self._rekey(st, precision)
            if error is not None:
                # the live book's own levels cannot be written at this precision: the frame contradicts
                # the book (a forged one would otherwise fail every fresh snapshot: a resync loop)
                return f"instrument precision {precision} for {symbol} contradicts its live book ({error}); refused"
        self.precisions[symbol] = precision
        return None

    def _restamp(self, st: PairState, precision: Precision, record: RawRecord) -> bool:
        """An update stamped with another precision than its book's (the instrument changed): re-key the book
        exactly before the update applies, unless that precision broke the book before (kept out). False
        when the book cannot take it (the update is refused, the book resyncs)."""
        if precision == self.suspect_precisions.get(st.symbol):
            return True
        error = self._rekey(st, precision)
        if error is not None:
            # the book's own levels cannot be written at the new precision: only a fresh snapshot can say
            self.reject(record, f"precision {precision} stamped on a {st.symbol} update contradicts its book "
                                f"({error}); resync requested")
            self.invalidate(st, f"precision change to {precision} contradicts the book", record)
            return False
        return True

    @staticmethod
    def _rekey(st: PairState, precision: Precision) -> NumberError | None:
        """Re-key the pair's book exactly at ``precision`` (an instrument frame's or a stamp's); the error
        when its levels cannot be written at it (the book is then unchanged)."""
        assert st.book is not None
        if not st.knows_verified and st.state in ("live", "stale"):
            st.mark_verified()  # the precision it verified at: what a checksum conflict falls back to
        try:
            st.book.set_precision(precision)
        except NumberError as exc:
            return exc
        st.revision += 1
        return None

    def _suspect(self, st: PairState, suspect: Precision, kept: Precision | None) -> str:
        """The pair's checksums failed at ``suspect`` and verify at ``kept`` (None: the decimals as sent):
        keep that, refuse this."""
        self.counters["instrument_conflicts"] += 1
        self.suspect_precisions[st.symbol] = suspect
        if kept is None:
            self.precisions.pop(st.symbol, None)
        else:
            self.precisions[st.symbol] = kept  # the worker publishes it: the instruments table heals too
        previous = "the decimals as sent" if kept is None else f"the previous precision {kept}"
        return (f"instrument precision {suspect} for {st.symbol} broke its verified book (its checksum verifies at "
                f"{previous}): {'they' if kept is None else kept} kept, {suspect} refused from now on")

    def _update_conflict(self, st: PairState, book: L2Book, checksum: int | None) -> str | None:
        """An update failed its checksum at a precision other than the verified one: if the book, written
        at the verified precision, verifies, the precision change was suspect (why; else None)."""
        kept, suspect = st.verified_precision, book.precision
        if kept is None or suspect is None or kept == suspect or checksum is None:
            return None
        try:
            book.set_precision(kept)
        except NumberError:  # the levels need the new precision: a real change of Kraken's
            return None
        if book.checksum() == checksum:
            return self._suspect(st, suspect, kept)
        try:
            book.set_precision(suspect)  # not the cause: the book stays as the session keeps the pair
        except NumberError:  # cannot happen (the levels were written at it); the book is invalidated anyway
            pass
        return None

    def _snapshot_conflict(self, st: PairState, data: BookData,
                           suspect: Precision | None) -> tuple[L2Book, BookDelta] | None:
        """A snapshot failed (its checksum, or a level not writable) at a precision other than the verified
        one: the book at the verified precision, if it verifies there (the precision was suspect)."""
        kept = st.verified_precision
        if not st.knows_verified or suspect is None or kept == suspect:
            return None
        book = new_book(st.symbol, st.depth, kept)
        try:
            delta = book.apply_snapshot(data.bids, data.asks, data.checksum)
        except NumberError:
            return None
        if not delta.checksum_ok:
            return None
        self._suspect(st, suspect, kept)
        return book, delta


def _why(delta: BookDelta) -> str:
    if delta.checksum_ok is False:
        return f"checksum mismatch: expected {delta.expected_checksum}, computed {delta.checksum}"
    return "crossed book: best bid at or above best ask"

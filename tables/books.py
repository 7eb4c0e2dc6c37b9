"""The book store: pair states to the ``books`` table (RocksDB + changelog) and back.

The ``books`` table has bytes keys and values and is co-partitioned with ``kraken.raw``; its records
are in :mod:`tables.codec`, its page layout in :mod:`tables.pages`. The store works out what to write
from the domain alone: a pair whose ``revision`` moved since the last flush is written, its pages
brought up to date by the batch's deltas (or rewritten from the book after a snapshot or a precision
change). The meta record is written last in each partition's batch; on restore, a page newer than its
meta (a crash between the two), a missing page or a record that does not decode means the stored
book cannot be trusted, and the pair resyncs.

The raw watermark (``\\0raw\\0<partition>``) is the last raw offset whose effects are stored. A worker
taking a partition over compares it with where its consumer starts and reads any gap itself, so
processing stays exact wherever the consumer group resumes (no committed offset yet, for one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from app.kafka_writer import Record
from models.book import L2Book, new_book
from models.marketdata import MarketState
from models.numbers import NumberError
from models.records import BookDeltaRecord
from models.session import PairState
from models.symbols import normalize
from tables.codec import (
    CodecError,
    Meta,
    committer_key,
    decode_meta,
    decode_page,
    decode_watermark,
    encode_meta,
    encode_page,
    encode_watermark,
    meta_key,
    page_key,
    watermark_key,
)
from tables.pages import Pages
from tables.partitiondb import PartitionDB

log = logging.getLogger("krakenflow.books")


class BookStore:
    """Flushes pair states to the ``books`` table and restores them after a restart."""

    def __init__(self, table: Any, changelog_topic: Callable[[], str], single_tail: bool = False) -> None:
        self.table = table
        self.changelog_topic = changelog_topic
        self.single_tail = single_tail  # the broker profile's ListOffsets workaround (app.profile)
        self.pages: dict[str, Pages] = {}
        self.flushed: dict[str, int] = {}  # revision of each pair as last written
        self.restored = 0
        self.records_written = 0
        self.bytes_written = 0

    def forget(self) -> None:
        """Drop what is known of the stored pairs (after a rebalance: re-read from the table)."""
        self.pages.clear()
        self.flushed.clear()

    # -- flush -------------------------------------------------------------------------------------

    def changes(self, states: Iterable[PairState], deltas: Iterable[BookDeltaRecord], processed: dict[int, int],
                lock_generations: Mapping[int, int] | None = None) -> dict[int, list[Record]]:
        """The changelog records of the pairs that changed, by partition, each partition's meta records
        and raw watermark last. ``deltas`` are the batch's book deltas in order. Counts the pairs as
        written: send the records (retrying until the broker has them), then :meth:`apply` them.

        The changelog first, then (once the broker has it) the local RocksDB and Faust's persisted
        changelog offset. The other order could leave the local store ahead of the changelog after a
        crash, and Faust's replay of the changelog tail at restart would then mix older and newer
        records of one book.
        """
        by_symbol: dict[str, list[BookDeltaRecord]] = {}
        for delta in deltas:
            by_symbol.setdefault(delta.exchange_symbol, []).append(delta)
        by_partition: dict[int, list[Record]] = {}
        for st in states:
            if self.flushed.get(st.symbol) == st.revision or st.last_partition < 0:
                continue
            # a pair's records all live in its raw partition
            by_partition.setdefault(st.last_partition, []).extend(self._records(st, by_symbol.get(st.symbol, ())))
            self.flushed[st.symbol] = st.revision
        generations = lock_generations or {}
        for partition, offset in processed.items():  # last, with the pairs' meta records before it
            by_partition.setdefault(partition, []).append(
                (watermark_key(partition), encode_watermark(offset, generations.get(partition))))
        return by_partition

    def apply(self, changes: Mapping[int, Sequence[Record]], changelog_offsets: Mapping[int, int | None]) -> None:
        """Write changelog records the broker has (committed) to the local RocksDB, with the offset of
        each partition's last one as Faust's persisted changelog offset."""
        for partition, records in changes.items():
            PartitionDB(self.table, partition).write(records, changelog_offsets.get(partition))
            self.records_written += len(records)
            self.bytes_written += sum(len(k or b"") + len(v or b"") for k, v in records)

    def watermark(self, partition: int) -> tuple[int | None, int | None]:
        """(the last raw offset of ``partition`` whose effects are in the table, the newest ingest lock
        generation seen on it), as any worker last flushed them; None where unknown."""
        value = PartitionDB(self.table, partition).get(watermark_key(partition))
        if not value:
            return None, None
        try:
            return decode_watermark(value)
        except CodecError as exc:
            log.warning("raw partition %d: %s; treating it as unknown", partition, exc)
            return None, None

    def committer(self, partition: int) -> str | None:
        """The transactional id that last took ``partition`` on (exactly-once), as the table holds it."""
        value = PartitionDB(self.table, partition).get(committer_key(partition))
        return value.decode("utf-8", "replace") if value else None

    def _records(self, st: PairState, deltas: Iterable[BookDeltaRecord]) -> list[Record]:
        pages = self.pages.get(st.symbol)
        book = st.book
        if pages is None or not pages.holds(book, st.epoch):
            pages = self.pages[st.symbol] = Pages.of_book(book, st.epoch, pages)
        else:
            for delta in deltas:
                for price, qty in delta.bids:
                    pages.apply(0, price, qty)
                for price, qty in delta.asks:
                    pages.apply(1, price, qty)
        pages.generation += 1
        records: list[Record] = []
        known = pages.known
        relisted = False
        for side, page in sorted(pages.dirty):
            levels = pages.sides[side].get(page)
            key = page_key(st.symbol, side, page)
            if levels:
                records.append((key, encode_page(pages.generation, levels)))
                if (side, page) not in known:
                    known.add((side, page))
                    relisted = True
            else:
                pages.sides[side].pop(page, None)
                if (side, page) in known:
                    records.append((key, None))
                    known.discard((side, page))
                    relisted = True
        pages.dirty.clear()
        if relisted or pages.listed is None:
            pages.listed = [list(p) for p in sorted(known)]
        records.append((meta_key(st.symbol), encode_meta(_meta(st, pages, pages.listed))))
        return records

    # -- restore -----------------------------------------------------------------------------------

    def restore(self, symbol: str, partition: int) -> PairState | None:
        """The pair's state as last flushed, or None when there is none (untrusted when it cannot be)."""
        db = PartitionDB(self.table, partition)
        raw = db.get(meta_key(symbol))
        if raw is None:
            return None
        try:
            meta = decode_meta(raw)
        except CodecError as exc:
            log.warning("%s: %s; resync needed", symbol, exc)
            return PairState(symbol, normalize(symbol), state="invalidated")
        st = PairState(symbol, normalize(symbol), depth=meta.depth, state=meta.state, seq=meta.seq,
                       epoch=meta.epoch, last_partition=meta.last_partition, last_offset=meta.last_offset,
                       ts_exchange_ns=meta.ts_exchange_ns, recv_ns=meta.recv_ns, next_grid_ns=meta.next_grid_ns,
                       market=MarketState.from_json(meta.market))
        if meta.verified_precision is not None:  # two ints (the codec checked)
            st.verified_precision = (meta.verified_precision[0], meta.verified_precision[1])
        st.verified_as_sent = meta.verified_as_sent
        try:
            pages = self._restore_pages(db, symbol, meta)
            if meta.has_book:
                st.book = self._restore_book(symbol, meta, pages)
        except CodecError as exc:
            log.warning("%s: %s; resync needed", symbol, exc)
            st.book, st.state = None, "invalidated"
            return st
        self.pages[symbol] = pages
        self.flushed[symbol] = st.revision
        self.restored += 1
        log.info("%s restored from the books table: seq %d, epoch %d, last raw offset %d/%d", symbol, st.seq,
                 st.epoch, st.last_partition, st.last_offset)
        return st

    @staticmethod
    def _restore_pages(db: PartitionDB, symbol: str, meta: Meta) -> Pages:
        precision = tuple(meta.precision) if meta.precision else None
        pages = Pages(Decimal(meta.width), meta.epoch, precision)  # type: ignore[arg-type]
        pages.generation = meta.generation
        for side, page in meta.pages:
            value = db.get(page_key(symbol, side, page))
            if value is None:
                raise CodecError(f"page {side}/{page} listed in its meta record is missing")
            generation, levels = decode_page(value)
            if generation > pages.generation:
                raise CodecError("page newer than its meta record (a crash mid-flush)")
            pages.sides[side][page] = dict(levels)
            pages.known.add((side, page))
        return pages

    @staticmethod
    def _restore_book(symbol: str, meta: Meta, pages: Pages) -> L2Book:
        bids = [level for levels in pages.sides[0].values() for level in levels.items()]
        asks = [level for levels in pages.sides[1].values() for level in levels.items()]
        book = new_book(symbol, meta.depth, pages.precision)
        bids.sort(key=lambda level: Decimal(level[0]), reverse=True)
        asks.sort(key=lambda level: Decimal(level[0]))
        try:
            book.apply_snapshot(bids, asks)
        except (ArithmeticError, NumberError) as exc:
            raise CodecError(f"stored levels are not numbers: {exc}") from None
        if book.checksum() != meta.checksum:
            raise CodecError("stored book does not match its checksum")
        return book


def _meta(st: PairState, pages: Pages, listed: list[list[int]]) -> Meta:
    """The pair's meta record; ``listed`` is its pages' sorted list (``[side, page]`` pairs)."""
    book = st.book
    return Meta(
        symbol=st.symbol, depth=st.depth, precision=list(book.precision) if book and book.precision else None,
        has_book=book is not None, state=st.state, seq=st.seq, epoch=st.epoch, last_partition=st.last_partition,
        last_offset=st.last_offset, ts_exchange_ns=st.ts_exchange_ns, recv_ns=st.recv_ns,
        next_grid_ns=st.next_grid_ns, width=str(pages.width), pages=listed,
        generation=pages.generation, checksum=book.checksum() if book else None, market=st.market.as_json(),
        verified_precision=list(st.verified_precision) if st.verified_precision else None,
        verified_as_sent=st.verified_as_sent,
    )

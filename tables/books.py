"""Books in a RocksDB-backed Faust table with small changelog records.

Layout of the ``books`` table (bytes keys and values, co-partitioned with ``kraken.raw``):

* ``<pair>\\0meta`` -> JSON: depth, precision, state, seq, epoch, last applied raw partition/offset,
  page width, page ids, checksum, flush generation;
* ``<pair>\\0<side>\\0<page>`` -> JSON ``{"g": generation, "l": {price: qty}}``: the levels whose price
  falls in one price band of ``width``;
* ``\\0raw\\0<partition>`` -> the last raw offset of that partition whose effects are stored. A worker
  taking a partition over compares it with where its consumer starts and reads any gap itself, so
  processing stays exact wherever the consumer group resumes (no committed offset yet, for one).

An update touches one or two pages near the top of the book, so a flush writes those pages and the
meta record, a few hundred bytes, never the whole book (a depth-1000 book spans ~64 pages). A snapshot
rewrites all pages. Writes are coalesced per agent batch: a page changed by 50 messages is written
once. The meta record is written last in each partition's batch; on restore, a page newer than its
meta (a crash between the two) means the stored book cannot be trusted, and the pair resyncs.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any, Callable

import orjson

from app.kafka_out import BatchWriter, Record
from models.book import L2Book
from models.marketdata import MarketState
from models.processor import PairState
from models.symbols import normalize
from tables.partitiondb import PartitionDB

log = logging.getLogger("krakenflow.books")

PAGES_PER_BOOK = 64


def meta_key(symbol: str) -> bytes:
    return f"{symbol}\0meta".encode()


def page_key(symbol: str, side: int, page: int) -> bytes:
    return f"{symbol}\0{'ba'[side]}\0{page}".encode()


def watermark_key(partition: int) -> bytes:
    """The raw partition's last processed offset (a key no pair symbol can produce)."""
    return b"\0raw\0%d" % partition


def _is_zero(qty: str) -> bool:
    return not qty.strip("0.")


class Pages:
    """The stored form of one pair's book: price bands -> {price: qty}, and which changed."""

    __slots__ = ("width", "sides", "dirty", "known", "generation", "_band")

    def __init__(self, width: Decimal) -> None:
        self.width = width
        self.sides: tuple[dict[int, dict[str, str]], dict[int, dict[str, str]]] = ({}, {})
        self.dirty: set[tuple[int, int]] = set()
        self.known: set[tuple[int, int]] = set()  # pages present in the table
        self.generation = 0
        self._band: dict[str, int] = {}

    def band(self, price: str) -> int:
        page = self._band.get(price)
        if page is None:
            if len(self._band) > 50_000:
                self._band.clear()
            page = self._band[price] = int(Decimal(price) // self.width)
        return page

    def apply(self, side: int, price: str, qty: str) -> None:
        page = self.band(price)
        levels = self.sides[side].setdefault(page, {})
        if _is_zero(qty):
            levels.pop(price, None)
        else:
            levels[price] = qty
        self.dirty.add((side, page))

    @classmethod
    def of_book(cls, book: L2Book, previous: "Pages | None") -> "Pages":
        """Pages for a whole book (after a snapshot); pages the previous layout had become deletes."""
        bids, asks = book.levels("bids"), book.levels("asks")
        prices = [Decimal(p) for p, _ in bids[-1:] + asks[-1:] + bids[:1] + asks[:1]]
        span = (max(prices) - min(prices)) if prices else Decimal(0)
        unit = Decimal(1).scaleb(-book.precision[0]) if book.precision else Decimal("1e-12")
        width = max(span / PAGES_PER_BOOK, unit)
        pages = cls(width)
        for side, levels in ((0, bids), (1, asks)):
            for price, qty in levels:
                pages.apply(side, price, qty)
        if previous is not None:
            pages.known = set(previous.known)
            pages.dirty |= previous.known
            pages.generation = previous.generation
        return pages


class BookStore:
    """Flushes pair states to the ``books`` table and restores them after a restart."""

    def __init__(self, table: Any, writer: BatchWriter, changelog_topic: Callable[[], str]) -> None:
        self.table = table
        self.writer = writer
        self.changelog_topic = changelog_topic
        self.pages: dict[str, Pages] = {}
        self.restored = 0
        self.records_written = 0
        self.bytes_written = 0

    # -- flush -------------------------------------------------------------------------------------

    async def flush(self, states: list[PairState], processed: dict[int, int]) -> None:
        """Write what changed, and each raw partition's last processed offset (``processed``).

        The changelog first, then (once the broker has it) the local RocksDB and Faust's persisted
        changelog offset. The other order could leave the local store ahead of the changelog after a
        crash, and Faust's replay of the changelog tail at restart would then mix older and newer
        records of one book.
        """
        by_partition: dict[int, list[Record]] = {}
        for st in states:
            if not st.changed:
                continue
            partition = st.last_partition  # a pair's records all live in one raw partition
            if partition < 0:
                continue
            by_partition.setdefault(partition, []).extend(self._records(st))
            st.changed = False
        for partition, offset in processed.items():  # last, with the pairs' meta records before it
            by_partition.setdefault(partition, []).append((watermark_key(partition), str(offset).encode()))
        futures: dict[int, list[Any]] = {}
        topic = self.changelog_topic()
        for partition, records in by_partition.items():
            futures[partition] = await self.writer.send_partition(topic, partition, records, single_tail=True)
        await asyncio.gather(*(f for sent in futures.values() for f in sent))
        for partition, records in by_partition.items():
            db = PartitionDB(self.table, partition)
            db.write(records)
            db.set_changelog_offset(futures[partition][-1].result().offset)
            self.records_written += len(records)
            self.bytes_written += sum(len(k or b"") + len(v or b"") for k, v in records)

    def processed_offset(self, partition: int) -> int | None:
        """The last raw offset of ``partition`` whose effects are in the table (any worker's)."""
        value = PartitionDB(self.table, partition).get(watermark_key(partition))
        return int(value) if value else None

    def _records(self, st: PairState) -> list[Record]:
        pages = self.pages.get(st.symbol)
        book = st.book
        if st.rewrite or pages is None:
            pages = self.pages[st.symbol] = Pages.of_book(book, pages) if book is not None else Pages(Decimal(1))
            st.rewrite = False
            st.pending.clear()
        else:
            for side, price, qty in st.pending:
                pages.apply(side, price, qty)
            st.pending.clear()
        pages.generation += 1
        records: list[Record] = []
        for side, page in sorted(pages.dirty):
            levels = pages.sides[side].get(page)
            key = page_key(st.symbol, side, page)
            if levels:
                records.append((key, orjson.dumps({"g": pages.generation, "l": levels})))
                pages.known.add((side, page))
            else:
                pages.sides[side].pop(page, None)
                if (side, page) in pages.known:
                    records.append((key, None))
                    pages.known.discard((side, page))
        pages.dirty.clear()
        records.append((meta_key(st.symbol), self._meta(st, pages)))
        return records

    @staticmethod
    def _meta(st: PairState, pages: Pages) -> bytes:
        book = st.book
        return orjson.dumps({
            "symbol": st.symbol, "depth": st.depth, "precision": list(book.precision) if book and book.precision
            else None, "has_book": book is not None, "state": st.state, "seq": st.seq, "epoch": st.epoch,
            "last_partition": st.last_partition, "last_offset": st.last_offset,
            "ts_exchange_ns": st.ts_exchange_ns, "recv_ns": st.recv_ns, "next_grid_ns": st.next_grid_ns,
            "width": str(pages.width), "pages": sorted(pages.known), "generation": pages.generation,
            "checksum": book.checksum() if book else None, "market": st.market.as_json(),
        })

    # -- restore -----------------------------------------------------------------------------------

    def restore(self, symbol: str, partition: int) -> PairState | None:
        """The pair's state as last flushed, or None when there is none (or it cannot be trusted)."""
        db = PartitionDB(self.table, partition)
        raw = db.get(meta_key(symbol))
        if raw is None:
            return None
        meta = orjson.loads(raw)
        st = PairState(symbol, normalize(symbol), depth=meta["depth"], state=meta["state"], seq=meta["seq"],
                       epoch=meta["epoch"], last_partition=meta["last_partition"], last_offset=meta["last_offset"],
                       ts_exchange_ns=meta["ts_exchange_ns"], recv_ns=meta["recv_ns"],
                       next_grid_ns=meta["next_grid_ns"], market=MarketState.from_json(meta.get("market")))
        pages = Pages(Decimal(meta["width"]))
        pages.generation = meta["generation"]
        bids: list[tuple[str, str]] = []
        asks: list[tuple[str, str]] = []
        for side, page in meta["pages"]:
            value = db.get(page_key(symbol, side, page))
            if value is None:
                log.warning("%s: page %s/%s listed in its meta record is missing; resync needed", symbol, side, page)
                return self._untrusted(st)
            stored = orjson.loads(value)
            if stored["g"] > pages.generation:
                log.warning("%s: page newer than its meta record (a crash mid-flush); resync needed", symbol)
                return self._untrusted(st)
            pages.sides[side][page] = dict(stored["l"])
            pages.known.add((side, page))
            (bids if side == 0 else asks).extend(stored["l"].items())
        if meta["has_book"]:
            precision = tuple(meta["precision"]) if meta["precision"] else None
            book = L2Book(symbol, st.depth, precision)  # type: ignore[arg-type]
            bids.sort(key=lambda level: Decimal(level[0]), reverse=True)
            asks.sort(key=lambda level: Decimal(level[0]))
            book.apply_snapshot(bids, asks)
            if book.checksum() != meta["checksum"]:
                log.warning("%s: stored book does not match its checksum; resync needed", symbol)
                return self._untrusted(st)
            st.book = book
        self.pages[symbol] = pages
        self.restored += 1
        log.info("%s restored from the books table: seq %d, epoch %d, last raw offset %d/%d", symbol, st.seq,
                 st.epoch, st.last_partition, st.last_offset)
        return st

    @staticmethod
    def _untrusted(st: PairState) -> PairState:
        st.book = None
        st.state = "invalidated"
        return st

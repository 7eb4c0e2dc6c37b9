"""Sequencing of ``kraken.book.deltas`` per symbol: duplicates dropped, gaps found, books restored.

Each delta carries ``(epoch, seq)``: ``seq`` is one more than the pair's previous delta, ``epoch``
changes with every applied exchange snapshot and never repeats. So, per symbol:

- ``is_snapshot`` replaces the book, whatever came before (a resync, a restart);
- ``(epoch, seq)`` at or below the book's: a repeat (a replay after a worker crash), dropped;
- the same epoch and ``seq + 1``: applied, and the book's checksum compared with the record's;
- anything else is a gap: the book is ``recovering`` until a source (the worker's web view, see
  :mod:`krakenflow.client.stream`) hands a book at some ``(epoch, seq)``; the deltas received
  meanwhile are kept and those after the restored book are applied on top.

A checksum mismatch makes the book ``invalid`` and asks for recovery the same way. Pure: no I/O; the
stream feeds records and runs the recoveries it is asked for.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from krakenflow.client.book import LocalBook

#: deltas kept per symbol while its book is recovering; beyond that the oldest go (recovery starts over)
MAX_PENDING = 50_000


@dataclass(slots=True)
class BookUpdate:
    """One applied delta (or a restored book): the book after it, and the record that made it."""

    symbol: str
    book: LocalBook
    record: Mapping[str, Any] | None  # None when the book was restored from a recovery source
    state: str  # live, invalid


@dataclass(slots=True)
class SymbolStats:
    applied: int = 0
    duplicates: int = 0
    gaps: int = 0
    checksum_failures: int = 0
    recoveries: int = 0


@dataclass(slots=True)
class _Symbol:
    book: LocalBook
    state: str = "waiting"  # waiting (nothing yet), recovering, live, invalid
    pending: deque[Mapping[str, Any]] = field(default_factory=deque)
    stats: SymbolStats = field(default_factory=SymbolStats)


class BookTracker:
    """Books of ``symbols`` (``BTC-USD``) from delta records; :meth:`feed` returns what changed."""

    def __init__(self, symbols: list[str]) -> None:
        self._symbols = {s: _Symbol(LocalBook(s)) for s in symbols}
        self.needs_recovery: set[str] = set(symbols)  # the stream asks its source for these

    @property
    def symbols(self) -> list[str]:
        return list(self._symbols)

    def book(self, symbol: str) -> LocalBook:
        return self._symbols[symbol].book

    def state(self, symbol: str) -> str:
        return self._symbols[symbol].state

    def stats(self, symbol: str) -> SymbolStats:
        return self._symbols[symbol].stats

    def feed(self, record: Mapping[str, Any]) -> list[BookUpdate]:
        sym = self._symbols.get(str(record["symbol"]))
        if sym is None:
            return []
        if record["is_snapshot"]:
            sym.pending.clear()
            self.needs_recovery.discard(sym.book.symbol)
            return [self._apply(sym, record)]
        if sym.state in ("waiting", "recovering"):
            self._keep(sym, record)
            return []
        book = sym.book
        epoch, seq = int(record["epoch"]), int(record["seq"])
        if (epoch, seq) <= (book.epoch, book.seq):
            sym.stats.duplicates += 1
            return []
        if sym.state == "invalid":  # waiting for a recovery already asked for
            self._keep(sym, record)
            return []
        if epoch != book.epoch or seq != book.seq + 1:
            sym.stats.gaps += 1
            self._recover(sym)
            self._keep(sym, record)
            return []
        return [self._apply(sym, record)]

    def restore(self, symbol: str, view: Mapping[str, Any]) -> list[BookUpdate]:
        """A book from a recovery source: ``epoch``, ``seq``, ``bids``, ``asks``, ``checksum`` (the worker's
        ``GET /books/{symbol}/`` answer at full depth). The deltas kept since are applied on top; if they
        do not continue from it, the book stays recovering (the source is asked again)."""
        sym = self._symbols[symbol]
        book = sym.book
        book.replace(view["bids"], view["asks"])
        book.epoch, book.seq = int(view["epoch"]), int(view["seq"])
        book.ts_exchange_ns = int(view.get("ts_exchange_ns") or 0)
        sym.stats.recoveries += 1
        ok = book.verify(int(view["checksum"]))
        sym.state = "live" if ok else "invalid"
        self.needs_recovery.discard(symbol)
        out = [BookUpdate(symbol, book, None, sym.state)]
        pending, sym.pending = sym.pending, deque()
        for record in pending:
            if record["is_snapshot"]:
                out.append(self._apply(sym, record))
                continue
            epoch, seq = int(record["epoch"]), int(record["seq"])
            if (epoch, seq) <= (book.epoch, book.seq):
                continue  # the restored book has it already
            if sym.state != "live" or epoch != book.epoch or seq != book.seq + 1:
                # the source's book is older than what was kept, or not valid: ask again
                sym.pending = deque([r for r in pending if (int(r["epoch"]), int(r["seq"])) > (book.epoch, book.seq)])
                self._recover(sym)
                return out
            out.append(self._apply(sym, record))
        return out

    def _apply(self, sym: _Symbol, record: Mapping[str, Any]) -> BookUpdate:
        book = sym.book
        if record["is_snapshot"]:
            book.replace(record["bids"], record["asks"])
        else:
            book.apply(record["bids"], record["asks"])
        book.epoch, book.seq = int(record["epoch"]), int(record["seq"])
        book.ts_exchange_ns = int(record["ts_exchange_ns"])
        sym.stats.applied += 1
        if book.verify(int(record["checksum"])):
            sym.state = "live"
        else:
            sym.stats.checksum_failures += 1
            self._recover(sym)
            sym.state = "invalid"
        return BookUpdate(book.symbol, book, record, "live" if book.checksum_ok else "invalid")

    def _recover(self, sym: _Symbol) -> None:
        if sym.state == "live":
            sym.state = "recovering"
        self.needs_recovery.add(sym.book.symbol)

    @staticmethod
    def _keep(sym: _Symbol, record: Mapping[str, Any]) -> None:
        if len(sym.pending) >= MAX_PENDING:
            sym.pending.popleft()
        sym.pending.append(record)

"""The page layout of a stored book: each side cut into price bands (pages), written when they change.

An update touches one or two pages near the top of the book, so a flush writes those pages and the
meta record, a few hundred bytes, never the whole book (a depth-1000 book spans ~64 pages). A snapshot
rewrites all pages. Writes are coalesced per agent batch: a page changed by 50 messages is written once.
"""

from __future__ import annotations

from decimal import Decimal

from models.book import L2Book

PAGES_PER_BOOK = 64


def _is_zero(qty: str) -> bool:
    return not qty.strip("0.")


class Pages:
    """The stored form of one pair's book: price bands -> {price: qty}, and which changed."""

    __slots__ = ("_band", "dirty", "epoch", "generation", "known", "listed", "precision", "sides", "width")

    def __init__(self, width: Decimal, epoch: int = 0, precision: tuple[int, int] | None = None) -> None:
        self.width = width
        self.sides: tuple[dict[int, dict[str, str]], dict[int, dict[str, str]]] = ({}, {})
        self.dirty: set[tuple[int, int]] = set()
        self.known: set[tuple[int, int]] = set()  # pages present in the table
        #: ``known`` sorted as ``[side, page]`` lists for the meta record, kept until ``known`` changes
        #: (sorting ~50 pages per pair per flush was ~3 % of the worker at 1k frames/s); None: not made yet
        self.listed: list[list[int]] | None = None
        self.generation = 0
        self.epoch, self.precision = epoch, precision  # of the book these pages hold
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

    def holds(self, book: L2Book | None, epoch: int) -> bool:
        """True when these pages hold ``book`` as of an earlier flush (deltas bring them up to date)."""
        return book is not None and self.epoch == epoch and self.precision == book.precision

    @classmethod
    def of_book(cls, book: L2Book | None, epoch: int, previous: Pages | None) -> Pages:
        """Pages for a whole book (after a snapshot); pages the previous layout had become deletes."""
        if book is None:
            pages = cls(Decimal(1), epoch)
        else:
            bids, asks = book.levels("bids"), book.levels("asks")
            prices = [Decimal(p) for p, _ in bids[-1:] + asks[-1:] + bids[:1] + asks[:1]]
            span = (max(prices) - min(prices)) if prices else Decimal(0)
            unit = Decimal(1).scaleb(-book.precision[0]) if book.precision else Decimal("1e-12")
            pages = cls(max(span / PAGES_PER_BOOK, unit), epoch, book.precision)
            for side, levels in ((0, bids), (1, asks)):
                for price, qty in levels:
                    pages.apply(side, price, qty)
        if previous is not None:
            pages.known = set(previous.known)
            pages.dirty |= previous.known
            pages.generation = previous.generation
        return pages

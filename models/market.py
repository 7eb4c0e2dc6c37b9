"""A session's books: routes parsed frames to per-pair :class:`~models.book.L2Book` objects.

Depth comes from the book subscribe acknowledgement (Kraken's default, 10, when none was seen);
precision from the ``instrument`` channel, including updates while a book is live.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.book import BookDelta, L2Book
from models.frames import Ack, BookFrame, Frame, InstrumentFrame
from models.numbers import NumberError

DEFAULT_DEPTH = 10


@dataclass(slots=True)
class BookError:
    """A book message that could not be applied (e.g. an update before any snapshot)."""

    symbol: str
    reason: str


class Market:
    """Books, depths and precisions for one stream of frames (a connection or a capture)."""

    __slots__ = ("books", "depths", "precisions")

    def __init__(self) -> None:
        self.books: dict[str, L2Book] = {}
        self.depths: dict[str, int] = {}
        self.precisions: dict[str, tuple[int, int]] = {}

    def on_frame(self, frame: Frame) -> list[BookDelta | BookError]:
        """Apply one parsed frame; book frames return one result per pair message."""
        if isinstance(frame, BookFrame):
            books = frame.books
            if len(books) == 1 and not frame.is_snapshot:
                # the common case, an update for one live book, without the general path's calls
                d = books[0]
                book = self.books.get(d.symbol)
                if book is not None:
                    try:
                        return [book.apply_update(d.bids, d.asks, d.checksum)]
                    except NumberError as exc:
                        return [BookError(d.symbol, str(exc))]
            return [self.on_book(d.symbol, frame.is_snapshot, d.bids, d.asks, d.checksum) for d in books]
        if isinstance(frame, InstrumentFrame):
            for pair in frame.pairs:
                self.set_precision(pair.symbol, (pair.price_precision, pair.qty_precision))
        elif isinstance(frame, Ack) and frame.success and frame.channel == "book" and frame.symbol:
            if frame.method == "subscribe":
                self.depths[frame.symbol] = frame.depth or DEFAULT_DEPTH
                self.books.pop(frame.symbol, None)  # a (re)subscription is always followed by a snapshot
        return []

    def set_precision(self, symbol: str, precision: tuple[int, int]) -> None:
        self.precisions[symbol] = precision
        book = self.books.get(symbol)
        if book is not None:
            try:
                book.set_precision(precision)
            except NumberError:
                del self.books[symbol]  # cannot be re-keyed exactly: wait for the next snapshot

    def on_book(
        self, symbol: str, is_snapshot: bool, bids: list[tuple[str, str]], asks: list[tuple[str, str]],
        checksum: int | None,
    ) -> BookDelta | BookError:
        book = self.books.get(symbol)
        try:
            if is_snapshot:
                if book is None:
                    book = L2Book(symbol, self.depths.get(symbol, DEFAULT_DEPTH), self.precisions.get(symbol))
                    self.books[symbol] = book
                return book.apply_snapshot(bids, asks, checksum)
            if book is None:
                return BookError(symbol, "update before any snapshot; resubscribe to get one")
            return book.apply_update(bids, asks, checksum)
        except NumberError as exc:
            return BookError(symbol, str(exc))

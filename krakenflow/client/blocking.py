"""The blocking book client: :class:`~krakenflow.client.stream.BookClient` on an event loop of its own.

::

    with BlockingBookClient("localhost:9092", ["BTC-USD"], books_url="http://localhost:6066") as client:
        for update in client.updates(timeout=30):
            print(update.symbol, update.book.bids[:3])

The loop runs in a daemon thread; updates cross to the caller through a queue, and :meth:`book`
returns a copy of a book's levels taken on the loop (never a book the loop is changing).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from krakenflow.client.stream import BookClient
from krakenflow.client.tracker import BookUpdate

_STOP = object()


class BlockingBookClient:
    """Same arguments as :class:`BookClient`."""

    def __init__(self, bootstrap: str, symbols: list[str], **options: Any) -> None:
        self._args, self._options = (bootstrap, list(symbols)), options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="krakenflow-client", daemon=True)
        self._updates: queue.Queue[Any] = queue.Queue(maxsize=options.pop("queue_size", 10_000))
        self.client: BookClient | None = None

    def __enter__(self) -> BlockingBookClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        self._call(self._start(), timeout)

    async def _start(self) -> None:
        self.client = BookClient(*self._args, **self._options)
        self.client.on_update(self._hand_over)
        await self.client.start()

    def _hand_over(self, update: BookUpdate) -> None:
        if self._updates.full():
            self._updates.get_nowait()  # nobody reads: keep the newest
        self._updates.put_nowait(update)

    def updates(self, timeout: float | None = None) -> Iterator[BookUpdate]:
        """Updates as they come; ends after ``timeout`` seconds without one, or when closed."""
        while True:
            try:
                item = self._updates.get(timeout=timeout)
            except queue.Empty:
                return
            if item is _STOP:
                return
            yield item

    def book(self, symbol: str, depth: int | None = None) -> dict[str, Any]:
        """A copy of ``symbol``'s book, shaped like the worker's ``GET /books/{symbol}/``: state, epoch,
        seq, checksum_ok, bids, asks (``[price, qty]`` best first)."""
        return self._call(self._copy(symbol, depth), 10.0)  # type: ignore[no-any-return]

    async def _copy(self, symbol: str, depth: int | None) -> dict[str, Any]:
        assert self.client is not None
        book = self.client.book(symbol)
        bids, asks = book.top(depth) if depth else (book.bids, book.asks)
        return {"symbol": symbol, "state": self.client.state(symbol), "epoch": book.epoch, "seq": book.seq,
                "checksum_ok": book.checksum_ok, "bids": [list(x) for x in bids], "asks": [list(x) for x in asks]}

    def close(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            if self.client is not None:
                self._call(self.client.stop(), timeout)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        self._updates.put(_STOP)

    def _call(self, coro: Any, timeout: float) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

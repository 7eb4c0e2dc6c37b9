"""The live web page on every worker: ``/ui/`` (no build step; the assets are in ``app/static/``).

- ``GET /ui/``: the page. Overview of every book in the cluster (state, best bid/ask, spread, last
  update, checksum failures, owner worker); ``/ui/?symbol=BTC-USD`` adds that book's ladder and depth
  chart.
- ``GET /ui/stream/books``: server-sent events, one ``books`` event a second with the cluster's listing
  (``GET /books/``'s rows, the other workers' included).
- ``GET /ui/stream/books/{symbol}?depth=N``: server-sent events, a ``book`` event whenever the book's
  ``seq`` moves (checked 10 times a second), the same body as ``GET /books/{symbol}/``. A pair owned by
  another worker is read from that worker, so any worker serves the whole page.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web as aioweb
from faust.web import Request, Response, View

from agents.pipeline import BookPipeline
from app.routing import OWNER_TIMEOUT, Router
from app.views import book_body, pair_row, parse_depth
from models.symbols import to_exchange

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"ui.js": "application/javascript", "ui.css": "text/css"}
LIST_EVERY = 1.0  # seconds between overview events
BOOK_EVERY = 0.1  # seconds between checks of a followed book


async def _sse(request: Any) -> aioweb.StreamResponse:
    response = aioweb.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                              "X-Accel-Buffering": "no"})
    await response.prepare(request)
    return response


async def _send(response: aioweb.StreamResponse, event: str, body: Any) -> None:
    await response.write(b"event: " + event.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n")


def register_ui(app: Any, pipeline: BookPipeline, books_table: Any) -> None:
    router = Router(app)

    def me() -> str:
        return str(app.conf.canonical_url)

    async def book_now(symbol: str, depth: int) -> dict[str, Any] | None:
        """The book from its owner: this worker's memory, or the owner's ``GET /books/{symbol}/``."""
        exchange_symbol = to_exchange(symbol)
        owner = router.owner_of(books_table.name, exchange_symbol.encode())
        if owner is None:
            st = pipeline.processor.pairs.get(exchange_symbol)
            return {**book_body(st, depth), "worker": me()} if st is not None and st.book is not None else None
        url = f"{str(owner).rstrip('/')}/books/{symbol}/?depth={depth}"
        try:
            async with app.http_client.get(url, timeout=aiohttp.ClientTimeout(total=OWNER_TIMEOUT)) as answer:
                if answer.status != 200:
                    return None
                body: dict[str, Any] = orjson.loads(await answer.read())
                return {**body, "worker": str(owner)}
        except (TimeoutError, aiohttp.ClientError, OSError, orjson.JSONDecodeError):
            return None

    @app.page("/ui/")
    class Page(View):
        async def get(self, request: Request) -> Response:
            return self.web.bytes((STATIC / "index.html").read_bytes(), content_type="text/html")

    @app.page("/ui/assets/{name}")
    class Asset(View):
        async def get(self, request: Request, name: str) -> Response:
            if name not in ASSETS:
                return self.web.bytes(b"not found", content_type="text/plain", status=404)
            return self.web.bytes((STATIC / name).read_bytes(), content_type=ASSETS[name])

    @app.page("/ui/stream/books")
    class BooksStream(View):
        async def get(self, request: Request) -> Any:
            response = await _sse(request)
            try:
                while True:
                    rows = [pair_row(st, me()) for st in pipeline.processor.pairs.values()]
                    others, unanswered = await router.from_other_workers("/books/", "books")
                    rows = sorted(rows + others, key=lambda r: r["symbol"])
                    await _send(response, "books", {"books": rows, "unanswered": unanswered})
                    await asyncio.sleep(LIST_EVERY)  # the event rate
            except ConnectionResetError:
                pass  # the page went away
            return response

    @app.page("/ui/stream/books/{symbol}")
    class BookStream(View):
        async def get(self, request: Request, symbol: str) -> Any:
            depth = parse_depth(request, 25) or 25
            response = await _sse(request)
            last: tuple[int, int] | None = None
            try:
                while True:
                    body = await book_now(symbol, depth)
                    if body is None:
                        await _send(response, "missing", {"symbol": symbol, "error": "no book for it right now"})
                    elif (body["epoch"], body["seq"]) != last:
                        last = (body["epoch"], body["seq"])
                        await _send(response, "book", body)
                    await asyncio.sleep(BOOK_EVERY)  # the polling rate of the in-memory book
            except ConnectionResetError:
                pass  # the page went away
            return response

"""Web views on every worker: books are served by the worker that owns the pair's partition.

``GET /books/`` lists every pair in the cluster with its state, seq, best levels and last update;
``GET /books/{symbol}/?depth=N`` (``BTC-USD``) returns the book, routed to its owner.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from faust.web import Request, Response, View

from agents.pipeline import BookPipeline
from app.routing import Router, json_response
from models.session import PairState
from models.symbols import to_exchange


def pair_row(st: PairState, worker: str) -> dict[str, Any]:
    """One row of ``GET /books/``."""
    bid, ask = st.book.best() if st.book is not None else (None, None)
    spread = str(Decimal(ask[0]) - Decimal(bid[0])) if bid and ask else None  # exact, a decimal string
    return {
        "symbol": st.norm, "exchange_symbol": st.symbol, "state": st.state, "seq": st.seq, "epoch": st.epoch,
        "depth": st.depth, "last_update_ns": st.ts_exchange_ns or None, "last_recv_ns": st.recv_ns or None,
        "best_bid": list(bid) if bid else None, "best_ask": list(ask) if ask else None, "spread": spread,
        "checksums_failed": st.checksums_failed, "worker": worker,
    }


def book_body(st: PairState, depth: int) -> dict[str, Any]:
    """``GET /books/{symbol}/``: the book's top ``depth`` levels per side, with where its stream stands."""
    book = st.book
    assert book is not None
    return {
        "symbol": st.norm, "exchange_symbol": st.symbol, "state": st.state, "seq": st.seq, "epoch": st.epoch,
        "depth": st.depth, "checksum": book.checksum(), "bids": book.levels("bids", depth),
        "asks": book.levels("asks", depth), "ts_exchange_ns": st.ts_exchange_ns,
    }


def parse_depth(request: Request, default: int = 10) -> int | None:
    try:
        depth = int(request.query.get("depth", str(default)))
    except ValueError:
        return None
    return depth if depth >= 1 else None


def register_book_views(app: Any, pipeline: BookPipeline, books_table: Any) -> None:
    router = Router(app)

    def local_pairs() -> list[dict[str, Any]]:
        worker = str(app.conf.canonical_url)
        return [pair_row(st, worker) for st in pipeline.processor.pairs.values()]

    @app.page("/books/")
    class BookList(View):
        async def get(self, request: Request) -> Response:
            return await router.listing(self.web, request, "/books/", "books", local_pairs())

    @app.page("/books/{symbol}/")
    class BookDetail(View):
        async def get(self, request: Request, symbol: str) -> Response:
            exchange_symbol = to_exchange(symbol)
            routed = await router.from_owner(self.web, request, books_table.name, exchange_symbol.encode())
            return routed if routed is not None else self._local(request, symbol, exchange_symbol)

        def _local(self, request: Request, symbol: str, exchange_symbol: str) -> Response:
            st = pipeline.processor.pairs.get(exchange_symbol)
            if st is None or st.book is None:
                known = sorted(s.norm for s in pipeline.processor.pairs.values())
                return json_response(self.web, {
                    "error": f"unknown symbol {symbol}: no book for it on this cluster",
                    "hint": "GET /books/ lists the books; symbols are written like BTC-USD", "known_here": known,
                }, status=404)
            depth = parse_depth(request)
            if depth is None:
                return json_response(self.web, {
                    "error": f"depth must be a positive integer, got {request.query.get('depth')!r}"}, status=400)
            return json_response(self.web, book_body(st, depth))

"""``/markets/`` and ``/candles/`` views, answered by the worker that owns the pair."""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View

from agents.candles import Candles
from agents.pipeline import BookPipeline
from app.routing import Router, json_response
from models.candles import INTERVALS
from models.marketdata import summary
from models.symbols import normalize, to_exchange


def register_market_views(app: Any, pipeline: BookPipeline, books_table: Any, candles: Candles) -> None:
    router = Router(app)

    def local_markets() -> list[dict[str, Any]]:
        return [summary(st.symbol, st.norm, st.market, st.book.best() if st.book else (None, None), st.state)
                for st in pipeline.processor.pairs.values()]

    @app.page("/markets/")
    class MarketList(View):
        async def get(self, request: Request) -> Response:
            return await router.listing(self.web, request, "/markets/", "markets", local_markets())

    @app.page("/markets/{symbol}/")
    class MarketDetail(View):
        async def get(self, request: Request, symbol: str) -> Response:
            exchange_symbol = to_exchange(symbol)
            routed = await router.from_owner(self.web, request, books_table.name, exchange_symbol.encode())
            if routed is not None:
                return routed
            st = pipeline.processor.pairs.get(exchange_symbol)
            if st is None:
                return json_response(self.web, {
                    "error": f"unknown symbol {symbol}: no market data for it on this cluster",
                    "hint": "GET /markets/ lists the markets; symbols are written like BTC-USD"}, 404)
            return json_response(self.web, summary(st.symbol, st.norm, st.market,
                                                   st.book.best() if st.book else (None, None), st.state))

    @app.page("/candles/{symbol}/")
    class CandleView(View):
        async def get(self, request: Request, symbol: str) -> Response:
            interval = request.query.get("interval", "1m")
            if interval not in INTERVALS:
                return json_response(self.web, {
                    "error": f"interval {interval!r} is not kept; use one of {sorted(INTERVALS)}"}, 400)
            norm = normalize(to_exchange(symbol))
            routed = await router.from_owner(self.web, request, "", norm.encode(), topic=candles.trades_topic)
            if routed is not None:
                return routed
            recent = list(candles.closed.get((norm, interval), ()))
            current = candles.open_candle(norm, interval)
            if current is None and not recent:
                return json_response(self.web, {
                    "error": f"no candles for {symbol} ({interval}) on this cluster yet",
                    "hint": "candles are built from kraken.trades; GET /markets/ lists the pairs"}, 404)
            return json_response(self.web, {"symbol": norm, "interval": interval, "open": current, "closed": recent})

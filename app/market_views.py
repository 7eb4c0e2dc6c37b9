"""``/markets/`` and ``/candles/`` views, answered by the worker that owns the pair."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from faust.exceptions import SameNode
from faust.web import Request, Response, View

from agents import candles as candle_agent
from agents.books import pipeline
from app.main import app
from models.candles import INTERVALS
from models.marketdata import summary
from models.symbols import normalize, to_exchange
from tables.faust_tables import books_table


def _json(web: Any, body: Any, status: int = 200) -> Response:
    return web.bytes(orjson.dumps(body), content_type="application/json", status=status)


def local_markets() -> list[dict[str, Any]]:
    return [summary(st.symbol, st.norm, st.market, st.book.best() if st.book else (None, None), st.state)
            for st in pipeline.processor.pairs.values()]


@app.page("/markets/")
class MarketList(View):
    async def get(self, request: Request) -> Response:
        rows = local_markets()
        if request.query.get("local") != "1":
            me = str(app.conf.canonical_url).rstrip("/")
            hosts = {str(h).rstrip("/") for h in app.router.tables_metadata()} - {me}

            async def fetch(host: str) -> list[dict[str, Any]]:
                try:
                    async with app.http_client.get(f"{host}/markets/?local=1", timeout=5) as response:
                        return list(orjson.loads(await response.read())["markets"])
                except Exception:  # a worker leaving mid-request: list what the others have
                    return []

            for more in await asyncio.gather(*(fetch(h) for h in hosts)):
                rows.extend(more)
        rows.sort(key=lambda r: r["symbol"])
        return _json(self.web, {"markets": rows, "count": len(rows)})


@app.page("/markets/{symbol}/")
class MarketDetail(View):
    async def get(self, request: Request, symbol: str) -> Response:
        exchange_symbol = to_exchange(symbol)
        try:
            return await app.router.route_req(books_table.name, exchange_symbol.encode(), self.web, request)
        except SameNode:
            pass
        except Exception:  # no assignment yet (starting up): answer from what this worker has
            pass
        st = pipeline.processor.pairs.get(exchange_symbol)
        if st is None:
            return _json(self.web, {"error": f"unknown symbol {symbol}: no market data for it on this cluster",
                                    "hint": "GET /markets/ lists the markets; symbols are written like BTC-USD"}, 404)
        return _json(self.web, summary(st.symbol, st.norm, st.market, st.book.best() if st.book else (None, None),
                                       st.state))


@app.page("/candles/{symbol}/")
class Candles(View):
    async def get(self, request: Request, symbol: str) -> Response:
        interval = request.query.get("interval", "1m")
        if interval not in INTERVALS:
            return _json(self.web, {"error": f"interval {interval!r} is not kept; use one of {sorted(INTERVALS)}"}, 400)
        norm = normalize(to_exchange(symbol))
        try:
            return await app.router.route_topic_req(candle_agent.trades_topic, norm.encode(), self.web, request)
        except SameNode:
            pass
        except Exception:  # no assignment yet: answer from what this worker has
            pass
        recent = list(candle_agent.closed.get((norm, interval), ()))
        current = candle_agent.open_candle(norm, interval)
        if current is None and not recent:
            return _json(self.web, {"error": f"no candles for {symbol} ({interval}) on this cluster yet",
                                    "hint": "candles are built from kraken.trades; GET /markets/ lists the pairs"}, 404)
        return _json(self.web, {"symbol": norm, "interval": interval, "open": current, "closed": recent})

"""OHLCV candles from ``kraken.trades`` in Faust windowed tables (1m, 5m, 1h tumbling) on exchange time.

The book agent writes each trade with its exchange time as the Kafka record timestamp, so the tables
window on exchange time (``relative_to_stream``). A window is kept ``KRAKENFLOW_CANDLE_GRACE`` seconds
past its end for late trades; when Faust expires it, the closed candle goes to ``kraken.candles``.
A trade later than that (its window already closed) is counted and not folded. After a crash a window
may close twice: ``(symbol, interval, interval_begin_ns)`` identifies a candle.
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import timedelta
from functools import partial
from typing import Any

import faust
import orjson

from app.main import app, settings
from models.candles import INTERVALS, finalize, fold

log = logging.getLogger("krakenflow.candles")

trades_topic = app.topic(settings.topic("trades"), key_type=bytes, value_type=bytes,
                         partitions=settings.output_partitions)
candles_topic = app.topic(settings.topic("candles"), key_type=bytes, value_type=bytes,
                          partitions=settings.output_partitions)

#: Recently closed candles per (symbol, interval), newest last, for ``GET /candles/``.
closed: dict[tuple[str, str], deque[dict[str, Any]]] = {}
stats = {"trades": 0, "late": 0, "duplicates": 0, "closed": 0}
_watermark: dict[str, int] = {}  # newest exchange time seen per symbol (ns)


async def _on_close(interval: str, key: Any, value: Any) -> None:
    """Faust calls this when a window expires: publish the closed candle."""
    if not value:
        return
    candle = finalize(orjson.loads(value))
    stats["closed"] += 1
    closed.setdefault((candle["symbol"], interval), deque(maxlen=120)).append(candle)
    await candles_topic.send(key=candle["symbol"].encode(), value=orjson.dumps(candle))


class CandleTable(faust.Table):  # type: ignore[misc]
    """A windowed table that reports every closed window.

    faust-streaming 0.15.3 skips ``on_window_close`` for a window whose start is not after the last
    window closed *in any partition* (one ``last_closed_window`` per table): with pairs in several
    partitions, only one pair's candle per interval would be published. Here that guard never holds
    back a window; a window closing twice (after a crash) is told apart downstream by its begin time.
    """

    @property
    def last_closed_window(self) -> float:
        return float("-inf")

    @last_closed_window.setter
    def last_closed_window(self, value: float) -> None:
        return None


def _candle_table(name: str, seconds: int) -> Any:
    table = app.tables.add(CandleTable(
        # str keys: a windowed key is (symbol, (start, end)), which needs the json serializer
        app, name=f"candles-{name}", key_type=str, value_type=bytes, partitions=settings.output_partitions,
        default=bytes, beacon=app.tables.beacon, on_window_close=partial(_on_close, name),  # missing: b""
    ))
    # Faust expires a window `expires` after its end (wall clock): that is the grace for late trades
    return table.tumbling(seconds, expires=timedelta(seconds=settings.candle_grace)).relative_to_stream()


tables = {name: _candle_table(name, seconds) for name, seconds in INTERVALS.items()}


@app.agent(trades_topic)
async def candles(stream: Any) -> None:
    """Fold every trade into its 1m, 5m and 1h candles.

    Sample record (key ``BTC-USD``, timestamp = exchange time in ms)::

        {"exchange":"kraken","symbol":"BTC-USD","exchange_symbol":"BTC/USD","event_id":"kraken:BTC-USD:84432123",
         "trade_id":84432123,"side":"buy","price":"62806.2","qty":"0.20777800","ord_type":"market",
         "ts_exchange_ns":1795242338389020000,...}
    """
    async for event in stream.events():
        try:
            trade = orjson.loads(event.value)
            ts = int(trade["ts_exchange_ns"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("skipping a kraken.trades record that is not a normalized trade: %r", event.value[:200])
            continue
        stats["trades"] += 1
        symbol = trade["symbol"]
        watermark = _watermark[symbol] = max(_watermark.get(symbol, 0), ts)
        for name, table in tables.items():
            width = INTERVALS[name] * 1_000_000_000
            if ts - ts % width + width + settings.candle_grace * 1_000_000_000 <= watermark:
                stats["late"] += 1  # its window has closed: folding would reopen it
                continue
            current = table[symbol].current()
            candle = fold(orjson.loads(current) if current else None, trade, name)
            if candle is None:
                stats["duplicates"] += 1
                continue
            table[symbol] = orjson.dumps(candle)


def open_candle(symbol: str, interval: str) -> dict[str, Any] | None:
    """The candle of the window now open (this worker's tables)."""
    value = tables[interval][symbol].now()
    return finalize(orjson.loads(value)) if value else None

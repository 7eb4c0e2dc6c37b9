"""OHLCV candles (1m, 5m, 1h) from ``kraken.trades``, closed on exchange time.

:class:`models.candles.CandleClock` does the work, purely: windows by each trade's exchange time,
closed once the trades partition's watermark (its newest exchange time) passes a window's end plus
``KRAKENFLOW_CANDLE_GRACE``; a later trade is late (counted: ``krakenflow_candle_late_trades_total``).
No clock is read, so a backlog or a replay at any speed gives the same candles. This module keeps the
clock's state in a Faust table (one record per (symbol, interval), one watermark per partition), so a
restart or a new owner goes on where it stopped. After a crash a window may close twice:
``(symbol, interval, interval_begin_ns)`` identifies a candle.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from typing import Any

import orjson

from agents.supervision import TaskRestarts
from app.settings import Settings
from models.candles import CandleClock
from models.records import CandleRecord, encode
from tables.definitions import changelog_compaction

log = logging.getLogger("krakenflow.candles")

WATERMARK = "~watermark|"  # table key prefix of a partition's watermark (no symbol starts with ~)


class Candles:
    """The candle agent's state: the clock, its table, the recently closed candles."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app, self.settings = app, settings
        self.trades_topic = app.topic(settings.topic("trades"), key_type=bytes, value_type=bytes,
                                      partitions=settings.output_partitions)
        self.candles_topic = app.topic(settings.topic("candles"), key_type=bytes, value_type=bytes,
                                       partitions=settings.output_partitions)
        self.table = app.Table("candles", key_type=str, value_type=bytes, partitions=settings.output_partitions,
                               extra_topic_configs=changelog_compaction(settings))
        self.clock = CandleClock(int(settings.candle_grace * 1_000_000_000))
        #: Recently closed candles per (symbol, interval), newest last, for ``GET /candles/``.
        self.closed: dict[tuple[str, str], deque[dict[str, Any]]] = {}
        self.stats = {"trades": 0, "closed": 0}
        self._loaded: set[int] = set()  # trades partitions whose stored state the clock holds

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions this worker no longer owns: a later owner's state is read again when they return."""
        gone = set(partitions)
        self._loaded -= gone
        self.clock.forget(gone)

    def _load(self, partition: int) -> None:
        for key, value in self.table.items():
            if key.startswith(WATERMARK):
                if int(key[len(WATERMARK):]) == partition:
                    self.clock.watermarks[partition] = int(value)
                continue
            state = orjson.loads(value)
            if state["partition"] == partition:
                self.clock.load(key, state)
        self._loaded.add(partition)

    async def fold(self, value: bytes, partition: int) -> None:
        """Fold one ``kraken.trades`` record; publish the candles it closed."""
        try:
            trade = orjson.loads(value)
            int(trade["ts_exchange_ns"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("skipping a kraken.trades record that is not a normalized trade: %r", value[:200])
            return
        if partition not in self._loaded:
            self._load(partition)
        self.stats["trades"] += 1
        before = self.clock.watermarks.get(partition)
        closed, changed = self.clock.fold(trade, partition)
        for key in changed:
            self.table[key] = orjson.dumps(self.clock.windows[key])
        if self.clock.watermarks[partition] != before:
            self.table[f"{WATERMARK}{partition}"] = str(self.clock.watermarks[partition]).encode()
        for candle in closed:
            self.stats["closed"] += 1
            self.closed.setdefault((candle["symbol"], candle["interval"]), deque(maxlen=120)).append(candle)
            await self.candles_topic.send(key=candle["symbol"].encode(), value=encode(CandleRecord(**candle)))

    def open_candle(self, symbol: str, interval: str) -> dict[str, Any] | None:
        """The candle of the newest window still open (this worker's partitions)."""
        return self.clock.open_candle(symbol, interval)


def register_candles(app: Any, settings: Settings, restarts: TaskRestarts) -> Candles:
    """The candle agent on ``app``; returns its state (for the views)."""
    state = Candles(app, settings)

    @app.agent(state.trades_topic, name="candles")
    async def candles(stream: Any) -> None:
        """Fold every trade into its 1m, 5m and 1h candles.

        Sample record (key ``BTC-USD``, timestamp = exchange time in ms)::

            {"exchange":"kraken","symbol":"BTC-USD","exchange_symbol":"BTC/USD","event_id":"kraken:BTC-USD:84432123",
             "trade_id":84432123,"side":"buy","price":"62806.2","qty":"0.20777800","ord_type":"market",
             "ts_exchange_ns":1795242338389020000,...}
        """
        try:
            async for event in stream.events():
                await state.fold(event.value, event.message.partition)
        except Exception as exc:  # Faust restarts the agent
            restarts.died("candles", exc)
            raise

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: Iterable[Any], **kwargs: Any) -> None:
        state.forget(tp.partition for tp in revoked if tp.topic == state.trades_topic.get_topic_name())

    return state

"""The book agent: ``kraken.raw`` -> books in RocksDB tables -> normalized topics.

Faust's per-event machinery (~75 us) dwarfs the book work (~10 us), so everything else is done per
batch: ``take_events`` hands over up to ``KRAKENFLOW_BATCH_MAX`` events, the processor turns them into
outputs, the outputs go out as one Kafka batch per partition, then the touched book pages and meta
records are written to RocksDB and the changelog. Only when both are delivered does the loop ask for
the next batch, which is when Faust acks (and later commits) the input: a crash replays at most the
uncommitted events, and the per-pair last applied offset turns those into skipped duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from agents.pipeline import BookPipeline
from app.main import app, raw_topic, settings
from tables.faust_tables import books_table, precision_of, remember_precision

log = logging.getLogger("krakenflow.agents")

pipeline = BookPipeline(app, settings, books_table, precision_of, remember_precision)


@app.agent(raw_topic)
async def books(stream: Any) -> None:
    """Every raw frame of this worker's partitions, a batch at a time.

    Sample record value (verbatim Kraken frame, key ``BTC/USD``)::

        {"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],
         "asks":[{"price":62803.8,"qty":0.95536416}],"checksum":441069893,
         "timestamp":"2026-08-16T23:37:05.399046Z"}]}
    """
    async for events in stream.take_events(settings.batch_max, within=settings.batch_within):
        await pipeline.handle(events)


@app.timer(interval=1.0)
async def book_tick() -> None:
    """Staleness, stuck resyncs and metrics refresh, once a second."""
    await pipeline.tick()


@app.on_partitions_revoked.connect
async def on_revoked(sender: Any, revoked: Iterable[Any], **kwargs: Any) -> None:
    await pipeline.on_rebalance(assigned=False)


@app.on_partitions_assigned.connect
async def on_assigned(sender: Any, assigned: Iterable[Any], **kwargs: Any) -> None:
    await pipeline.on_rebalance(assigned=True)

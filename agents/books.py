"""The book agent: ``kraken.raw`` -> books in RocksDB tables -> normalized topics.

Faust's per-event machinery (~70 us) dwarfs the book work (~10 us), so the agent takes whole batches:
by default each fetch's records of a partition straight from the consumer (:mod:`app.batching`, no
per-event dispatch, no batch window: what has arrived is processed at once), or with
``KRAKENFLOW_BATCH_DRAIN=0`` Faust's stream through ``take_events`` (up to ``KRAKENFLOW_BATCH_MAX``
events or ``KRAKENFLOW_BATCH_WITHIN`` seconds). The processor turns a batch into outputs, the outputs go out as one Kafka batch per partition, then the touched book pages and meta
records are written to RocksDB and the changelog. Only when both are delivered does the loop ask for
the next batch, which is when Faust acks (and later commits) the input: a crash replays at most the
uncommitted events, and the per-pair last applied offset turns those into skipped duplicates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from agents.pipeline import BookPipeline
from agents.supervision import TaskRestarts
from app.batching import BatchChannel
from app.settings import Settings
from tables.definitions import Tables


def register_books(app: Any, settings: Settings, raw_topic: Any, tables: Tables,
                   restarts: TaskRestarts) -> BookPipeline:
    """The book agent, its timer and rebalance hooks on ``app``; returns the pipeline they drive."""
    pipeline = BookPipeline(app, settings, tables)
    channel: BatchChannel | None = None
    if settings.batch_drain:
        channel = app.batch_channels[settings.raw_topic] = BatchChannel(settings.raw_topic)

    @app.agent(raw_topic, name="books")
    async def books(stream: Any) -> None:
        """Every raw frame of this worker's partitions, a batch at a time.

        Sample record value (verbatim Kraken frame, key ``BTC/USD``)::

            {"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],
             "asks":[{"price":62803.8,"qty":0.95536416}],"checksum":441069893,
             "timestamp":"2026-08-16T23:37:05.399046Z"}]}
        """
        # shielded: a stop that cancels the agent lets the batch commit (close() waits for it), so what
        # the web views served before a SIGTERM is what the tables hold after it
        try:
            if channel is None:
                async for events in stream.take_events(settings.batch_max, within=settings.batch_within):
                    durable = await asyncio.shield(pipeline.handle([event.message for event in events]))
                    await pipeline.stored(durable)  # Faust acks the events when the agent takes more
                return
            async for batch in channel:
                try:
                    durable = await asyncio.shield(pipeline.handle(batch.records))
                except BaseException as exc:  # the consumer fetches the batch again for the restarted agent
                    pipeline.failed(exc)
                    batch.processed(exc if isinstance(exc, Exception) else RuntimeError("the book agent stopped"))
                    raise
                batch.processed(durable=durable)  # the consumer acks it once durable
        except Exception as exc:  # Faust restarts the agent; the pipeline reads any gap it left
            restarts.died("books", exc)
            raise

    @app.timer(interval=1.0, name="book_tick")
    async def book_tick() -> None:
        """Staleness, stuck resyncs and metrics refresh, once a second."""
        try:
            await pipeline.tick()
        except Exception as exc:  # the next tick is the restart
            restarts.died("book_tick", exc)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: Iterable[Any], **kwargs: Any) -> None:
        await pipeline.on_rebalance(assigned=False)

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: Iterable[Any], **kwargs: Any) -> None:
        await pipeline.on_rebalance(assigned=True, partitions=[
            tp.partition for tp in assigned if tp.topic == settings.raw_topic])

    @app.on_before_shutdown.connect
    async def on_shutdown(sender: Any, **kwargs: Any) -> None:
        await pipeline.close()

    return pipeline

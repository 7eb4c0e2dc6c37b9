"""Topic layout, created explicitly with its partition counts (brokers may auto-create with others)."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from app.settings import Settings

log = logging.getLogger("krakenflow.topics")

OUTPUTS = ("book.deltas", "book.snapshots", "book.events", "metrics", "deadletter", "trades", "tickers", "candles")


def topic_layout(settings: Settings) -> dict[str, int]:
    """Topic name -> partitions. Output topics are keyed by normalized symbol (``BTC-USD``)."""
    layout = {settings.raw_topic: settings.raw_partitions, settings.topic("control"): 1,
              settings.topic("ingest.lock"): 1}
    for name in OUTPUTS:
        layout[settings.topic(name)] = settings.output_partitions
    return layout


async def ensure_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="krakenflow-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, partitions, settings.replication_factor)
            for name, partitions in topic_layout(settings).items() if name not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another process created them first
            log.info("created topics %s", ", ".join(t.name for t in wanted))
    finally:
        await admin.close()

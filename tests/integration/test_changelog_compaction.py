"""The books changelog compacts on Apache Kafka: created with its table's compaction configs (or given
them on start when an older version created it), and many transactional versions of the same keys
shrink to what a restore from the beginning reads, while the same records under Kafka's defaults stay.

A worker that lost its data dir restores the whole changelog; without rolled segments nothing is ever
compacted and that restore grew with uptime (issue 19). The restore's duration is measured in
``bench/faults.py --scenario restore``; here only the mechanism is asserted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from app.factory import create_app
from app.settings import Settings
from app.topics import ensure_topics
from tables.definitions import BOOKS_CHANGELOG_CONFIGS, changelog_topics
from tests.brokers import shared_kafka
from tests.integration.test_kafka_writer import committed_records

pytestmark = pytest.mark.integration

KEYS = 200  # a partition's pages, meta records and watermark: the same keys written again and again
HISTORY = 300  # transactions written at once: 60,000 records, what a busy partition writes in minutes
#: segments roll every 10 s and the log cleaner looks every 15 s (its back-off): a few passes fit
COMPACTION_TIMEOUT = 120.0


def settings_for(bootstrap: str) -> Settings:
    run = uuid.uuid4().hex[:8]
    return Settings.from_env({"KRAKENFLOW_BROKER": f"kafka://{bootstrap}", "KRAKENFLOW_BROKER_PROFILE": "apache-kafka",
                              "KRAKENFLOW_APP_ID": f"kf-compact-{run}", "KRAKENFLOW_TOPIC_PREFIX": f"kfc{run}",
                              "KRAKENFLOW_RAW_PARTITIONS": "1"})


async def topic_configs(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        return {entry[0]: entry[1] for entry in described.resources[0][4]}
    finally:
        await admin.close()


async def records_from_beginning(bootstrap: str, topic: str, until: int | None = None) -> int:
    """How many records a ``read_committed`` consumer (a table restore) reads from the beginning to the end,
    or to offset ``until``."""
    return len(await committed_records(bootstrap, topic, until))


class Writer:
    """One transaction per batch of every key, as the book agent commits a partition's flush (pages, then
    the meta records, the raw watermark last), to each of ``topics``."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.topics = topics
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"kf-compact-{uuid.uuid4()}",
                                         compression_type="zstd")
        self.batches = 0
        self.last_offset = -1  # of the latest record written to the first topic

    async def batch(self) -> None:
        await self.producer.begin_transaction()
        futures = [await self.producer.send(topic, f"v{self.batches}-{key}".encode() * 8, key=f"k{key}".encode(),
                                            partition=0)
                   for topic in self.topics for key in range(KEYS)]
        self.last_offset = max((await asyncio.gather(*futures))[:KEYS], key=lambda m: m.offset).offset
        await self.producer.commit_transaction()
        self.batches += 1

    @property
    def records(self) -> int:
        return self.batches * KEYS


async def test_books_changelog_compacts_to_what_a_restore_needs() -> None:
    kafka = await asyncio.to_thread(shared_kafka)
    settings = settings_for(kafka.bootstrap)
    await ensure_topics(settings, changelog_topics(create_app(settings)))  # as a worker does before Faust starts
    changelog = f"{settings.app_id}-books-changelog"
    configs = await topic_configs(kafka.bootstrap, changelog)
    assert {k: configs[k] for k in BOOKS_CHANGELOG_CONFIGS} == BOOKS_CHANGELOG_CONFIGS
    assert configs["cleanup.policy"] == "compact"

    # the same records into a changelog as Faust creates one by default (compacted, Kafka's segment sizes)
    control = f"{settings.app_id}-control-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(control, 1, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()

    writer = Writer(kafka.bootstrap, [changelog, control])
    await writer.producer.start()
    read: dict[str, Any] = {}
    try:
        for _ in range(HISTORY):
            await writer.batch()
        history, history_end = writer.records, writer.last_offset + 1
        deadline = time.monotonic() + COMPACTION_TIMEOUT
        while True:
            # only rolled segments are cleaned, and a segment rolls on an append: write on, as a live worker
            await writer.batch()
            read[changelog] = await records_from_beginning(kafka.bootstrap, changelog, history_end)
            if read[changelog] < history / 10:
                break
            assert time.monotonic() < deadline, (
                f"the books changelog was not compacted within {COMPACTION_TIMEOUT:.0f} s: a restore still reads "
                f"{read[changelog]} of the {history} records of its history")
    finally:
        await writer.producer.stop()
    # the same records under Kafka's defaults: all still there, as the books changelog's were (issue 19)
    read[control] = await records_from_beginning(kafka.bootstrap, control)
    assert read[control] == writer.records, read


async def test_an_existing_changelog_gets_its_table_configs_on_start() -> None:
    """A changelog created by an older version (Faust's defaults) is altered by the worker's start; its
    other topic configs stay."""
    kafka = await asyncio.to_thread(shared_kafka)
    settings = settings_for(kafka.bootstrap)
    changelog = f"{settings.app_id}-books-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(changelog, 1, 1, topic_configs={
            "cleanup.policy": "compact", "max.message.bytes": "2000000"})])
    finally:
        await admin.close()
    before = await topic_configs(kafka.bootstrap, changelog)
    assert before["segment.ms"] != BOOKS_CHANGELOG_CONFIGS["segment.ms"]

    await ensure_topics(settings, changelog_topics(create_app(settings)))

    # the controller takes the change; the broker that answers applies it from the metadata log a moment later
    deadline = time.monotonic() + 30
    while {k: (after := await topic_configs(kafka.bootstrap, changelog))[k]
           for k in BOOKS_CHANGELOG_CONFIGS} != BOOKS_CHANGELOG_CONFIGS:
        assert time.monotonic() < deadline, f"the changelog kept its configs: {after}"
        await asyncio.sleep(0.1)  # polling the broker's configs: Kafka offers no notification
    assert (after["cleanup.policy"], after["max.message.bytes"]) == ("compact", "2000000")

"""Read a range of ``kraken.raw`` directly: the records a new partition owner must still process.

Faust resumes a partition at the group's committed offset, which may lie past records whose effects
no commit stored: under exactly-once the input is acked before its transaction commits, and a worker
killed before its first commit of a partition leaves the offset with nothing in the books table. The
table knows the last offset whose effects it holds (nothing: the range starts at the topic's first
record), so the gap is read here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ingest.raw import read_raw
from models.session import RawRecord


async def read_range(bootstrap: str, topic: str, partition: int, start: int, end: int,
                     config: Mapping[str, Any] | None = None) -> tuple[list[RawRecord], int]:
    """Records with ``start <= offset < end``, in order, and the first offset still in the topic: more
    than ``start`` when retention has removed the range's beginning (the caller must say so and
    resync; a short range is never returned silently). ``config``: more consumer settings
    (:func:`app.security.kafka_client_config`)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="krakenflow-catchup",
                                auto_offset_reset="earliest", **(config or {}))
    await consumer.start()
    records: list[RawRecord] = []
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        first = max(start, (await consumer.beginning_offsets([tp]))[tp])
        consumer.seek(tp, first)
        while await consumer.position(tp) < end:
            batches = await consumer.getmany(tp, timeout_ms=1000)
            for message in batches.get(tp, []):
                if message.offset >= end:
                    break
                if not records and message.offset > first:  # removed while we read
                    first = message.offset
                records.append(read_raw(message.value, message.key, partition, message.offset, message.headers))
    finally:
        await consumer.stop()
    return records, first

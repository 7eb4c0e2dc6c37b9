"""Read a range of ``kraken.raw`` directly: the records a new partition owner must still process.

Faust resumes a partition at the group's committed offset; a partition whose previous owner died
before its first commit has none, and the consumer may then start past records that no one
processed. The books table knows the last offset whose effects it holds, so the gap is read here.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from models.processor import RawRecord


async def read_range(bootstrap: str, topic: str, partition: int, start: int, end: int) -> list[RawRecord]:
    """Records with ``start <= offset < end``, in order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="krakenflow-catchup")
    await consumer.start()
    records: list[RawRecord] = []
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        while await consumer.position(tp) < end:
            batches = await consumer.getmany(tp, timeout_ms=1000)
            for message in batches.get(tp, []):
                if message.offset >= end:
                    break
                recv = dict(message.headers or ()).get("recv_ns")
                records.append(RawRecord(message.value or b"", message.key, partition, message.offset,
                                         int(recv) if recv else None))
    finally:
        await consumer.stop()
    return records

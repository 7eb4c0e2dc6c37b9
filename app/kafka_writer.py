"""Batched Kafka output: one record batch per topic partition per flush.

Faust's ``topic.send`` costs ~110-170 us per record on this machine class (its producer buffer is
drained one record at a time), more than the whole book update. Building aiokafka record batches
directly costs ~16 us per record, so the book agent produces its outputs and its table changelog
through this writer. Partitions follow Kafka's default keyed partitioner (murmur2), so records land
where any Kafka client would put them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from app.kafka_internals import reuse_zstd_contexts

Record = tuple[bytes | None, bytes | None]
#: A record with its timestamp (ms; None: the producer's clock).
TimedRecord = tuple[bytes | None, bytes | None, int | None]


def key_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partition for a keyed record (``murmur2(key) & 0x7fffffff % n``)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class BatchWriter:
    """An aiokafka producer used only through record batches."""

    def __init__(self, bootstrap: str, client_id: str, config: dict[str, Any] | None = None,
                 producer: AIOKafkaProducer | None = None) -> None:
        self.bootstrap, self.client_id = bootstrap, client_id
        self.config = config or {"acks": "all"}  # the broker profile's writer_config()
        self._producer: AIOKafkaProducer | None = producer  # given: started and stopped by its owner
        self._partitions: dict[str, int] = {}
        self._key_cache: dict[tuple[bytes, int], int] = {}

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("BatchWriter.start() was not awaited")
        return self._producer

    def new_producer(self, **extra: Any) -> AIOKafkaProducer:
        """A producer with this writer's settings (``extra``: a ``transactional_id``, say)."""
        reuse_zstd_contexts()  # a context per batch cost more than the rest of a small batch's encoding
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, client_id=self.client_id, max_batch_size=1 << 20,
            max_request_size=1 << 22, linger_ms=0, **self.config, **extra,
        )

    async def start(self) -> None:
        # created here: aiokafka binds its producer to the running loop
        self._producer = self.new_producer()
        await self._producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def partitions(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            found = await self.producer.partitions_for(topic)
            n = self._partitions[topic] = len(found)
        return n

    def partition_for(self, key: bytes, partitions: int) -> int:
        cached = self._key_cache.get((key, partitions))
        if cached is None:
            if len(self._key_cache) > 100_000:
                self._key_cache.clear()
            cached = self._key_cache[(key, partitions)] = key_partition(key, partitions)
        return cached

    async def send_keyed(self, topic: str, records: Iterable[Record | TimedRecord],
                         headers: list[tuple[str, bytes]] | None = None) -> list[asyncio.Future[object]]:
        """Send records to their keyed partitions; returns the delivery futures (await them)."""
        n = await self.partitions(topic)
        groups: dict[int, list[Record | TimedRecord]] = {}
        for record in records:
            groups.setdefault(self.partition_for(record[0] or b"", n), []).append(record)
        futures: list[asyncio.Future[object]] = []
        for partition, group in groups.items():
            futures.extend(await self.send_partition(topic, partition, group, headers=headers))
        return futures

    async def send_partition(self, topic: str, partition: int, records: Sequence[Record | TimedRecord],
                             single_tail: bool = False,
                             headers: list[tuple[str, bytes]] | None = None) -> list[asyncio.Future[object]]:
        """Send to one partition in as few batches as fit.

        ``single_tail`` sends the last record in a batch of its own: the embedded broker answers
        ListOffsets(LATEST) with the base offset of the last batch + 1, so a changelog whose last batch
        holds one record reports its true end (Faust recovers tables up to that offset).
        """
        futures: list[asyncio.Future[object]] = []
        body, tail = (records[:-1], records[-1:]) if single_tail and records else (records, [])
        for chunk in (body, tail):
            if not chunk:
                continue
            batch = self.producer.create_batch()
            for record in chunk:
                key, value = record[0], record[1]
                stamp = record[2] if len(record) > 2 else None  # type: ignore[misc]
                if batch.append(key=key, value=value, timestamp=stamp, headers=headers) is None:  # batch full
                    futures.append(await self.producer.send_batch(batch, topic, partition=partition))
                    batch = self.producer.create_batch()
                    batch.append(key=key, value=value, timestamp=stamp, headers=headers)
            futures.append(await self.producer.send_batch(batch, topic, partition=partition))
        return futures

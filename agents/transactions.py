"""Exactly-once book batches: one Kafka transaction per raw partition per batch.

A batch's outputs (deltas, snapshots, events, metrics, trades, tickers, dead letters) and its books
changelog records (pages, meta records, and the raw watermark: the consumed ``kraken.raw`` offset)
commit together or not at all. The consumed offset is committed there, not with
``send_offsets_to_transaction``: Faust's own consumer commits the group's offsets, and a group that
also gets transactional offset commits makes Kafka answer the consumer's offset fetches with
UNSTABLE_OFFSET_COMMIT while a transaction is open, which stalled the worker under load (measured:
16k of 40k frames, then nothing for 5 minutes). The group offset is a hint; the watermark is the truth. ``read_committed`` consumers (Faust's own, so the table recovery too)
never see the records of a batch that did not commit, and the worker that processes the batch again
after a crash or a rebalance starts from the committed watermark, so each output appears once.

Each raw partition has its own transactional id (``<app id>-books-<partition>``): a worker that takes
a partition over initializes the id, which aborts the previous owner's open transaction and fences
that owner (a paused or partitioned worker): its commit fails with ``ProducerFenced`` and it gives
the partition up. The local RocksDB is written only after the commit, so it never runs ahead of the
changelog; when a crash comes between the two, Faust's recovery replays the committed tail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    ProducerFenced,
    TransactionalIdAuthorizationFailed,
)

from app.kafka_internals import shorten_transaction_backoff
from app.kafka_writer import BatchWriter, Record, TimedRecord
from models.backoff import Backoff

log = logging.getLogger("krakenflow.transactions")

#: errors that mean another producer holds this transactional id now (the partition moved)
FENCED_ERRORS = (ProducerFenced, InvalidProducerEpoch, TransactionalIdAuthorizationFailed)

#: an open transaction the coordinator aborts by itself (a worker killed mid-batch); longer than the
#: group session (10 s), so a worker that merely paused is fenced by the next owner, not by this
TRANSACTION_TIMEOUT_MS = 60_000


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class Fenced(Exception):
    """Another worker owns this raw partition's transactional id: this worker must give it up."""

    def __init__(self, partition: int) -> None:
        super().__init__(f"raw partition {partition}: fenced by a newer owner of its transactional id")
        self.partition = partition


class Transactions:
    """The transactional producers of the raw partitions this worker processes."""

    def __init__(self, template: BatchWriter, app_id: str,
                 owns: Callable[[int], bool] = lambda partition: True, hold: float = 0.0) -> None:
        self.template = template  # settings (bootstrap, security, compression) for every producer
        shorten_transaction_backoff()  # a commit right after the previous one: 1 ms, not aiokafka's 20 ms
        #: fault injection: seconds each commit is held open before it commits (a commit in flight across
        #: a pause, for the zombie tests; 0 in production)
        self.hold = hold
        self.app_id = app_id
        self.owns = owns  # whether the consumer group still assigns this raw partition to this worker
        self._writers: dict[int, BatchWriter] = {}
        #: partitions this worker was fenced from: their id is never initialized again before the group
        #: assigns them anew (:meth:`assign`). A zombie (a worker paused past its session) that re-opened
        #: a producer for a queued commit would fence the rightful owner and commit stale table records
        self._fenced: set[int] = set()
        self.commits = 0
        self.retries = 0
        self.fenced = 0

    def transactional_id(self, partition: int) -> str:
        return f"{self.app_id}-books-{partition}"

    def assign(self, partitions: Iterable[int]) -> None:
        """The group assigned ``partitions`` to this worker (a rebalance): they may be opened again."""
        self._fenced.difference_update(partitions)

    def is_fenced(self, partition: int) -> bool:
        return partition in self._fenced

    async def open(self, partition: int) -> BatchWriter:
        """The partition's writer; starting it initializes the transactional id (fencing any other).
        Raises :class:`Fenced` for a partition given up since the last assignment."""
        if partition in self._fenced:
            raise Fenced(partition)
        writer = self._writers.get(partition)
        if writer is None:
            if not self.owns(partition):
                raise Fenced(partition)  # a new producer would fence the partition's new owner
            producer = self.template.new_producer(transactional_id=self.transactional_id(partition),
                                                  transaction_timeout_ms=TRANSACTION_TIMEOUT_MS)
            await producer.start()
            writer = self._writers[partition] = BatchWriter(self.template.bootstrap, self.template.client_id,
                                                             self.template.config, producer=producer)
        return writer

    async def drop(self, partition: int) -> None:
        writer = self._writers.pop(partition, None)
        if writer is not None:
            try:
                await writer.producer.stop()
            except KafkaError as exc:  # a fenced or broken producer may fail to stop cleanly
                log.info("transactional producer of raw partition %d stopped with %s", partition, exc)

    async def close(self) -> None:
        for partition in list(self._writers):
            await self.drop(partition)

    async def commit(self, partition: int, outputs: Mapping[str, Sequence[TimedRecord]], changelog_topic: str,
                     changelog: Sequence[Record]) -> int | None:
        """Commit one batch of ``partition``; returns the offset of its last changelog record.

        Retries a broker error (aborting and resending) until the batch commits; raises
        :class:`Fenced` when another worker holds the partition's transactional id.
        """
        try:
            return await self._commit_retrying(partition, outputs, changelog_topic, changelog)
        except Fenced:
            # given up until the group assigns it again: nothing queued may re-initialize its id
            self._fenced.add(partition)
            await self.drop(partition)
            raise

    async def _commit_retrying(self, partition: int, outputs: Mapping[str, Sequence[TimedRecord]],
                               changelog_topic: str, changelog: Sequence[Record]) -> int | None:
        backoff = Backoff(base=0.2, cap=10.0)
        while True:
            try:
                return await self._commit_once(partition, outputs, changelog_topic, changelog)
            except FENCED_ERRORS as exc:
                self.fenced += 1
                log.warning("raw partition %d: %s; giving the partition up until the next rebalance", partition,
                            type(exc).__name__)
                raise Fenced(partition) from exc
            except KafkaError as exc:
                self.retries += 1
                delay = backoff.next_delay()
                log.warning("raw partition %d: transaction failed (%s); retrying in %.1f s", partition, exc, delay)
                await self._abort(partition)
                await asyncio.sleep(delay)

    async def _commit_once(self, partition: int, outputs: Mapping[str, Sequence[TimedRecord]],
                           changelog_topic: str, changelog: Sequence[Record]) -> int | None:
        writer = await self.open(partition)
        producer = writer.producer
        await producer.begin_transaction()
        futures: list[asyncio.Future[Any]] = []
        try:
            for topic, records in outputs.items():
                futures.extend(await writer.send_keyed(topic, records))
            logged = await writer.send_partition(changelog_topic, partition, changelog) if changelog else []
            futures.extend(logged)
            if self.hold:
                await asyncio.sleep(self.hold)
            await producer.commit_transaction()
        except BaseException:
            # the sends fail with the transaction: their errors are the commit's, retrieved (now or when
            # they end) so that asyncio does not log each one as never retrieved
            for future in futures:
                future.add_done_callback(_retrieve)
            raise
        await asyncio.gather(*futures)
        self.commits += 1
        return int(logged[-1].result().offset) if logged else None  # type: ignore[attr-defined]

    async def _abort(self, partition: int) -> None:
        """Abort the open transaction; a producer that cannot is replaced (its id initialized anew)."""
        writer = self._writers.get(partition)
        if writer is None:
            return
        try:
            if writer.producer._txn_manager.is_in_transaction():  # no public "in transaction" query
                await writer.producer.abort_transaction()
        except FENCED_ERRORS as exc:
            self.fenced += 1
            raise Fenced(partition) from exc  # commit() remembers it and drops the producer
        except KafkaError as exc:
            log.info("raw partition %d: abort failed (%s); replacing its producer", partition, exc)
            await self.drop(partition)
        if partition not in self._writers and not self.owns(partition):
            raise Fenced(partition)  # a new producer would fence the partition's new owner

"""Exactly-once book batches: one Kafka transaction per worker per group commit, fenced by the group.

A group commit's outputs (deltas, snapshots, events, metrics, trades, tickers, dead letters) and its books
changelog records (pages, meta records, and each raw partition's watermark: the consumed ``kraken.raw``
offset) commit together or not at all, for every raw partition the commit covers. One transaction per
worker, not one per raw partition: each transaction costs the broker about the same whatever it carries
(AddPartitionsToTxn, markers, two transaction-log writes), and eight producers committing back to back
took more broker CPU than the data (issue 20). ``read_committed`` consumers (Faust's own, so the table
recovery too) never see the records of a batch that did not commit, and the worker that processes it again
after a crash or a rebalance starts from the committed watermark, so each output appears once.

**Fencing** (KIP-447, done here because aiokafka does not), in two parts:

* **The group check**, on a producer's first transaction of each raw partition since it was assigned (and
  again after the producer is replaced). The consumed offset stays in the changelog (the watermark), so the
  group offset is not the fence: such a transaction also commits an offset of the ``books.fence`` topic for
  the worker's consumer group, with the group generation and member id that Faust's consumer holds
  (TxnOffsetCommit v3, :mod:`app.kafka_internals`). The group coordinator refuses it once the group has
  moved on; the transaction then aborts and its partitions are given up until the next assignment. The
  same transaction writes the producer's transactional id to the partition's changelog as its committer
  (``\\0committer\\0<partition>``, :mod:`tables.codec`).
* **The takeover fence.** A new owner of a raw partition initializes the transactional id of the
  partition's last committer (:meth:`Transactions.fence_id`) before it reads the state it resumes from:
  that aborts whatever the former owner has open and bumps its epoch, so the former owner cannot commit
  again without a new producer, whose first transaction of any partition goes through the group check.

The check costs a request pair (AddOffsetsToTxn, then TxnOffsetCommit once every record is acked) and a
round trip between the last ack and EndTxn. Paid on every transaction, it was 13 % of the worker's event
loop at 1k frames/s (issue 20); paid once per partition per assignment, it is paid at a rebalance. So:

* a worker paused past its session (a zombie) cannot commit when it wakes: the new owner of each of its
  partitions fenced its id (the partitions it committed), or the group check refuses the first
  transaction it tries (the partitions it had not committed yet), the group having a newer generation;
* a checked transaction's offsets are committed only after every record of the transaction is acked, so
  one that passes the check wrote nothing after it: its records are all in the log, open, when the next
  owner looks. The next owner waits for the changelog partition to have no open transaction
  (``tables.recovery.committed_tail``) before it reads the state it resumes from, and fences any other
  committer that read finds;
* a worker revokes its partitions (eager rebalance) only after its commits in flight settle
  (``BookPipeline.on_rebalance``), so it never commits a partition of a generation it is not in.

The offset is of a topic Faust never consumes, so it never mixes with Faust's own offset commits of
``kraken.raw`` (a group that gets transactional offset commits of the partitions it consumes answers the
consumer's offset fetches with UNSTABLE_OFFSET_COMMIT while a transaction is open, which stalled the
worker under load: 16k of 40k frames, then nothing for 5 minutes).

The transactional id is the worker's (``<app id>-books-<worker id>``, the id kept in its data directory):
a worker restarted on its data directory takes it back, which aborts the transaction its killed run left
open. A transaction nobody takes back is aborted by the coordinator after :data:`TRANSACTION_TIMEOUT_MS`.
The local RocksDB is written only after the commit, so it never runs ahead of the changelog; when a
crash comes between the two, Faust's recovery replays the committed tail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from aiokafka import TopicPartition
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    ProducerFenced,
    TransactionalIdAuthorizationFailed,
)

from app.kafka_internals import (
    StaleMembership,
    is_fatal,
    needs_abort,
    open_transaction_ids,
    retrieve_failure,
    send_offsets_fenced,
    shorten_transaction_backoff,
)
from app.kafka_writer import BatchWriter, Record, TimedRecord
from models.backoff import Backoff
from tables.codec import committer_key

log = logging.getLogger("krakenflow.transactions")

#: errors that mean the producer's epoch is no longer the transactional id's: the coordinator aborted an
#: open transaction (its timeout), or another process took the id (two workers given one data directory)
FENCED_ERRORS = (ProducerFenced, InvalidProducerEpoch, TransactionalIdAuthorizationFailed)

#: an open transaction the coordinator aborts by itself (a worker killed mid-commit that does not come back
#: on its data directory); the next owner of its partitions waits for that. Commits take milliseconds
TRANSACTION_TIMEOUT_MS = 10_000

#: a producer replaced this many times in a row without a commit between: something else holds the id
#: (two workers on one data directory). Each new owner of one of this worker's partitions also fences it
#: once at a takeover (:meth:`Transactions.fence_id`), so a rebalance may replace it once per other worker
MAX_REINITS = 20

#: (generation, member id) of the worker's group membership, or None while it has none
Membership = Callable[[], "tuple[int, str] | None"]


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class Fenced(Exception):
    """The group moved these raw partitions on: this worker must give them up until it is assigned again."""

    def __init__(self, partitions: Iterable[int], reason: str = "the group moved on") -> None:
        self.partitions = sorted(set(partitions))
        super().__init__(f"raw partitions {self.partitions}: {reason}")


class Committed(NamedTuple):
    """A committed group commit: each changelog partition's records as written (the committer records
    included) and the offset of its last one."""

    changelog: dict[int, Sequence[Record]]
    offsets: dict[int, int]


class Transactions:
    """The transactional producer of this worker's book batches."""

    def __init__(self, template: BatchWriter, app_id: str, worker_id: str, group_id: str, fence_topic: str,
                 membership: Membership, hold: float = 0.0) -> None:
        self.template = template  # settings (bootstrap, security, compression) for the producer
        shorten_transaction_backoff()  # a commit right after the previous one: 1 ms, not aiokafka's 20 ms
        #: fault injection: seconds each commit is held open, its records acked and its group check not
        #: yet made (a commit in flight across a pause, for the zombie tests; 0 in production)
        self.hold = hold
        self.id_prefix = f"{app_id}-books-"  # every worker's: a new owner initializes its former owner's
        self.transactional_id = f"{self.id_prefix}{worker_id}"
        self.group_id = group_id
        self.fence = TopicPartition(fence_topic, 0)
        self.membership = membership
        self._writer: BatchWriter | None = None
        #: partitions the group check refused: never committed again before the group assigns them anew
        self._fenced: set[int] = set()
        #: partitions this producer committed after a group check since they were assigned: their
        #: transactions skip the check (a new owner fences this producer's id before it takes one over)
        self._checked: set[int] = set()
        self.checks = 0  # transactions that carried the group check
        self.fenced_ids = 0  # former owners' transactional ids this worker fenced at a takeover
        self.commits = 0
        self.retries = 0
        self.fenced = 0  # transactions refused by the group check
        self.reinits = 0  # producers replaced after their epoch was taken (a timed-out transaction)

    def assign(self, partitions: Iterable[int]) -> None:
        """The group assigned ``partitions`` to this worker (a rebalance): they may be committed again."""
        self._fenced.difference_update(partitions)
        self._checked.clear()  # a new generation: each partition's first transaction is checked again

    def is_fenced(self, partition: int) -> bool:
        return partition in self._fenced

    async def open(self) -> BatchWriter:
        """The worker's writer; starting it initializes the transactional id (aborting a transaction an
        earlier run of this worker left open)."""
        if self._writer is None:
            producer = self.template.new_producer(transactional_id=self.transactional_id,
                                                  transaction_timeout_ms=TRANSACTION_TIMEOUT_MS)
            await producer.start()
            self._writer = BatchWriter(self.template.bootstrap, self.template.client_id, self.template.config,
                                       producer=producer)
        return self._writer

    async def fence_id(self, transactional_id: str) -> None:
        """Initialize another worker's transactional id (a former owner of a partition this worker takes
        over): its open transaction is aborted and its producer can commit nothing more; a new producer
        of that id goes through the group check before it commits any partition."""
        producer = self.template.new_producer(transactional_id=transactional_id,
                                              transaction_timeout_ms=TRANSACTION_TIMEOUT_MS)
        try:
            await producer.start()  # InitProducerId: the epoch moves past the former owner's
        except TransactionalIdAuthorizationFailed:
            log.error("Kafka refused this worker the transactional id %s of a former owner it must fence; give "
                      "the workers Write on the transactional id prefix %s (Kafka ACLs)", transactional_id,
                      self.id_prefix)
            raise
        finally:
            try:
                await producer.stop()
            except KafkaError as exc:  # the id is fenced once initialized; a failed stop changes nothing
                log.info("fencing producer %s stopped with %s", transactional_id, exc)
        self.fenced_ids += 1

    async def open_holders(self, topic: str, partition: int) -> list[str]:
        """Other workers' transactional ids that hold a transaction open on ``topic``/``partition`` now
        (KIP-664; empty on a broker without it). Raises ``KafkaError``."""
        ids = await open_transaction_ids(self.template.bootstrap, self.template.config, topic, partition)
        return [i for i in ids if i.startswith(self.id_prefix) and i != self.transactional_id]

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        self._checked.clear()  # the next producer's first transaction of each partition is checked
        if writer is not None:
            retrieve_failure(writer.producer)
            try:
                await writer.producer.stop()
            except KafkaError as exc:  # a fenced or broken producer may fail to stop cleanly
                log.info("transactional producer stopped with %s", exc)

    async def commit(self, partitions: Sequence[int], outputs: Mapping[str, Sequence[TimedRecord]],
                     changelog_topic: str, changelog: Mapping[int, Sequence[Record]]) -> Committed:
        """Commit one group commit covering ``partitions``: what it wrote to the changelog, and where.

        Retries a broker error (aborting and resending) until the batch commits; raises :class:`Fenced`
        when the group check refuses it (or this worker has no membership to check).
        """
        refused = [p for p in partitions if p in self._fenced]
        if refused:
            raise Fenced(refused, "given up since the last assignment")
        try:
            return await self._commit_retrying(partitions, outputs, changelog_topic, changelog)
        except Fenced:
            self._fenced.update(partitions)  # nothing queued commits them before the next assignment
            raise

    async def _commit_retrying(self, partitions: Sequence[int], outputs: Mapping[str, Sequence[TimedRecord]],
                               changelog_topic: str, changelog: Mapping[int, Sequence[Record]]) -> Committed:
        backoff: Backoff | None = None  # made on the first failure: its Random seeds from the OS (~1 % of CPU)
        reinits = 0
        while True:
            try:
                return await self._commit_once(partitions, outputs, changelog_topic, changelog)
            except StaleMembership as exc:
                self.fenced += 1
                log.warning("raw partitions %s: %s; giving them up until the next rebalance", list(partitions), exc)
                await self._abort()
                raise Fenced(partitions, str(exc)) from exc
            except FENCED_ERRORS as exc:
                # the id's epoch moved past this producer: its open transaction was aborted (timed out while
                # the worker was paused). A new producer is safe: the group check still guards each commit
                self.reinits += 1
                reinits += 1
                await self.close()
                if reinits > MAX_REINITS:
                    raise Fenced(partitions, f"transactional id {self.transactional_id} is taken by another "
                                             f"process ({type(exc).__name__}); give each worker its own data "
                                             f"directory") from exc
                log.warning("transactional producer %s lost its epoch (%s); starting a new one",
                            self.transactional_id, type(exc).__name__)
            except KafkaError as exc:
                self.retries += 1
                backoff = backoff or Backoff(base=0.2, cap=10.0)
                delay = backoff.next_delay()
                log.warning("raw partitions %s: transaction failed (%s); retrying in %.1f s", list(partitions), exc,
                            delay)
                await self._abort()
                await asyncio.sleep(delay)

    async def _commit_once(self, partitions: Sequence[int], outputs: Mapping[str, Sequence[TimedRecord]],
                           changelog_topic: str, changelog: Mapping[int, Sequence[Record]]) -> Committed:
        membership = self.membership()
        if membership is None:  # between a lost membership and the next join: nothing to check against
            raise StaleMembership(self.group_id, -1, "", -1)
        writer = await self.open()
        if is_fatal(writer.producer):  # fenced between two commits (a takeover): replaced, as a fenced one is
            raise ProducerFenced()
        producer = writer.producer
        unchecked = [p for p in partitions if p not in self._checked]
        written = {p: entries for p, entries in changelog.items() if entries}
        for p in unchecked:  # the committer record: whom the next owner of these partitions fences
            written[p] = [*written.get(p, ()), (committer_key(p), self.transactional_id.encode())]
        await producer.begin_transaction()
        futures: list[asyncio.Future[Any]] = []
        logged: dict[int, list[asyncio.Future[Any]]] = {}
        try:
            for topic, records in outputs.items():
                futures.extend(await writer.send_keyed(topic, records))
            for partition, entries in written.items():
                logged[partition] = await writer.send_partition(changelog_topic, partition, entries)
                futures.extend(logged[partition])
            if unchecked:
                # the group check goes out once every record is in the log (a check passed before a record
                # landed would let that record commit after a new owner read the changelog); its
                # AddOffsetsToTxn goes out now, beside the produce requests
                generation, member_id = membership
                check = asyncio.ensure_future(send_offsets_fenced(producer, {self.fence: 0}, self.group_id,
                                                                  generation, member_id,
                                                                  after=self._acked(list(futures))))
                futures.append(check)
                self.checks += 1
            elif self.hold:
                futures.append(asyncio.ensure_future(self._acked(list(futures))))
            await asyncio.gather(*futures)
            await producer.commit_transaction()
        except BaseException:
            # the sends fail with the transaction: their errors are the commit's, retrieved (now or when
            # they end) so that asyncio does not log each one as never retrieved
            for future in futures:
                future.add_done_callback(_retrieve)
            raise
        self.commits += 1
        self._checked.update(partitions)
        return Committed(written, {p: int(fs[-1].result().offset) for p, fs in logged.items() if fs})

    async def _acked(self, futures: list[asyncio.Future[Any]]) -> None:
        """Until every send is acked or failed (a failure is the commit's to raise, not this wait's)."""
        if futures:
            await asyncio.wait(futures)
        if self.hold:
            await asyncio.sleep(self.hold)

    async def _abort(self) -> None:
        """Abort the open transaction; a producer that cannot is replaced (its id initialized anew)."""
        if self._writer is None:
            return
        try:
            if needs_abort(self._writer.producer):
                await self._writer.producer.abort_transaction()
        except KafkaError as exc:
            log.info("abort failed (%s); replacing the transactional producer", exc)
            await self.close()

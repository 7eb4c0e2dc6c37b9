"""Glue between Faust events, the pure :class:`~models.processor.BookProcessor`, the store and Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

from aiokafka.errors import KafkaError

from agents.catchup import read_range
from agents.commits import GroupCommits, Job, merged, one_lane
from agents.transactions import Fenced, Transactions
from app.kafka_internals import group_membership
from app.kafka_writer import BatchWriter, TimedRecord
from app.security import kafka_client_config
from app.settings import Settings
from ingest.raw import read_raw
from models.backoff import Backoff
from models.marketdata import WhaleThresholds
from models.processor import BookProcessor, Output, PairState, ProcessorSettings, RawRecord
from models.records import BookDeltaRecord, DeadLetterRecord, encode
from models.symbols import normalize
from tables.books import BookStore
from tables.definitions import Tables
from tables.partitiondb import PartitionDB
from tables.recovery import committed_tail

log = logging.getLogger("krakenflow.agents")

#: times a record may take the book agent down before it is dead-lettered and skipped
MAX_STRIKES = 2


def _dead_letter(message: Any, partition: int, reason: str) -> Output:
    """A dead letter built from the record's bytes alone: safe on any input."""
    key = message.key.decode("utf-8", "replace") if isinstance(message.key, bytes) else ""
    value = message.value.decode("utf-8", "replace") if isinstance(message.value, bytes) else ""
    return Output("deadletter", normalize(key) if "/" in key else key, DeadLetterRecord(
        reason=reason, raw=value, raw_key=key, raw_partition=partition, raw_offset=message.offset, ts_recv_ns=None))


class BookPipeline:
    def __init__(self, app: Any, settings: Settings, tables: Tables) -> None:
        self.app = app
        self.settings = settings
        config = {**settings.profile.writer_config(), **kafka_client_config(settings)}
        self.writer = BatchWriter(settings.kafka_bootstrap, f"{settings.app_id}-books", config)
        #: at least once, the changelog goes through a producer (a connection) of its own: aiokafka sends one
        #: produce request per broker at a time, so on the outputs' producer the next batch's outputs
        #: queued behind the previous batch's changelog write, a round trip on every delta's latency
        self.changelog_writer = None if settings.exactly_once else BatchWriter(
            settings.kafka_bootstrap, f"{settings.app_id}-books-changelog", config)
        table = tables.books
        self.store = BookStore(table, lambda: table.changelog_topic.get_topic_name(),
                               single_tail=settings.profile.changelog_single_tail)
        self._partition = -1
        self.processor = BookProcessor(
            ProcessorSettings(settings.snapshot_interval_ms, settings.snapshot_levels, settings.stale_after,
                              settings.resync_min_interval,
                              WhaleThresholds.parse(settings.whale_notional, settings.whale_thresholds),
                              subscribed=settings.pairs, depth=settings.depth,
                              require_lock_gen=settings.lock_gen_rule),
            precision_of=tables.precision_of,
            restore=self._restore,
        )
        self.remember_precision = tables.remember_precision
        self._published: dict[str, tuple[int, int]] = {}
        self._started = False
        self._lock = asyncio.Lock()
        self.batches = 0
        self.events = 0
        self.delivery_retries = 0
        self.caught_up = 0
        self.rebalances = 0
        self.recovery_seconds = 0.0
        self._assigned_at: float | None = None
        self._resumed: set[int] = set()  # partitions whose first event since assignment was seen
        self._done: dict[int, int] = {}  # raw partition -> last offset whose effects are stored
        self._seen: dict[int, int] = {}  # raw partition -> last offset processed (its commit may be in flight)
        #: one lane for every partition: one transaction per worker per commit under exactly-once, and at
        #: least once one produce request for the outputs of every partition, then one for their changelog.
        #: A lane per partition (8 commits in flight, each its own requests: the producer sends one request
        #: per broker at a time, so they queued behind each other) had the same p50 and a worse tail: at 1k
        #: frames/s, at least once, receive -> read p99 39.6 / 26.5 ms, emitted -> appended p99.9 60 / 15 ms
        self.commits = GroupCommits(self._commit, lane=one_lane)
        self._fenced: set[int] = set()  # partitions another worker's transactions took over
        self._fenced_ids: set[str] = set()  # former owners' transactional ids fenced since the assignment
        self._assigned: set[int] = set()  # raw partitions of the current assignment
        self._lost: set[int] = set()  # partitions whose unprocessed records retention removed
        self.lost_records = 0
        self.replayed = 0  # events at or below the stored watermark, skipped
        self.fenced_events = 0  # events of fenced partitions, skipped
        self.poison_skipped = 0  # records that failed MAX_STRIKES times, dead-lettered and skipped
        self._current: tuple[int, int] | None = None  # (raw partition, offset) being processed
        self._strikes: dict[tuple[int, int], tuple[int, str]] = {}  # record -> (failures, last error)
        self.changelog_caught_up = 0  # changelog records committed after the local state, applied on resume
        self.transactions: Transactions | None = None

    def _restore(self, symbol: str) -> PairState | None:
        st = self.store.restore(symbol, self._partition)
        if st is not None and st.book is not None and self._partition in self._lost:
            st.state = "invalidated"  # records it needed are gone: the timer requests its resync
        return st

    def _membership(self) -> tuple[int, str] | None:
        try:
            consumer = self.app.consumer
        except Exception:  # no consumer yet
            return None
        return group_membership(consumer)

    def _make_transactions(self) -> None:
        """The worker's transactions (exactly-once), made once the worker knows its name (its data dir)."""
        if self.transactions is None and self.settings.exactly_once:
            worker_id = getattr(self.app, "worker_id", None) or self.settings.web_port
            self.transactions = Transactions(self.writer, self.settings.app_id, str(worker_id), self.app.conf.id,
                                             self.settings.topic("books.fence"), self._membership,
                                             hold=self.settings.fault_commit_hold_ms / 1000)

    async def _ensure_started(self) -> None:
        if not self._started:
            await self.writer.start()
            if self.changelog_writer is not None:
                try:
                    await self.changelog_writer.start()
                except BaseException:  # the next call starts both again: the outputs' producer must not leak
                    await self.writer.stop()
                    raise
            self._make_transactions()
            self._started = True

    async def handle(self, records: Sequence[Any]) -> asyncio.Future[None] | None:
        """One batch of raw records (``.partition .offset .key .value .headers``: aiokafka's records, or
        Faust's messages): each partition's share is processed and committed on its own (under
        exactly-once, one transaction per group commit for every partition).

        The commits do not hold up the next batch: each partition's go to its group commit
        (:mod:`agents.commits`), concurrent with the other partitions' and with further processing, in
        order. Under exactly-once the caller may ack a batch while its commit is in flight: after a crash
        the stored watermark, not the group offset, says where processing resumes. At least once it
        returns a future done when the batch's commits are durable (None: they are): the caller acks the
        batch then, so the group offset never runs ahead of the table.
        """
        async with self._lock:
            await self._ensure_started()
            by_partition: dict[int, list[Any]] = {}
            for message in records:
                by_partition.setdefault(message.partition, []).append(message)
            for partition, share in by_partition.items():
                if partition in self._fenced or partition not in self._assigned:
                    # another worker owns it now (fenced: the rebalance will tell us), or an event fetched
                    # before a revocation: processing it from this worker's stale store would race the owner
                    self.fenced_events += len(share)
                    continue
                out: list[Output] = []
                processed: dict[int, int] = {}
                if partition not in self._resumed and not await self._resume(partition):
                    self.fenced_events += len(share)
                    continue
                for message in share:
                    last = processed.get(partition, self._seen.get(partition, self._done.get(partition)))
                    if last is not None:
                        if message.offset <= last:
                            self.replayed += 1  # its effects are stored (committed) already
                            continue
                        if message.offset > last + 1:  # records the consumer did not hand over
                            await self._read_gap(partition, last + 1, message.offset, out, processed)
                    elif self.transactions is not None and message.offset > 0:
                        # exactly-once, and the table holds nothing of this partition: the group offset the
                        # consumer resumed at was acked before its transaction committed (a worker killed
                        # before its first commit of the partition), so what is still in the topic before it
                        # was never committed by anyone
                        await self._read_gap(partition, 0, message.offset, out, processed, unstored=True)
                    self._current = (partition, message.offset)
                    strike = self._strikes.get(self._current)
                    if strike is not None and strike[0] >= MAX_STRIKES:
                        # it took the agent down twice: dead-lettered and skipped, so no input holds a partition
                        del self._strikes[self._current]
                        self.poison_skipped += 1
                        out.append(_dead_letter(message, partition, f"poison: processing failed {strike[0]} times "
                                                                    f"({strike[1]}); skipped"))
                    else:
                        self._process(read_raw(message.value, message.key, partition, message.offset,
                                               message.headers), out)
                    processed[partition] = message.offset
                self._current = None
                if processed:
                    self._seen.update(processed)
                # now, before the next batch changes the pairs: the table records of this batch's state
                await self._add(Job(partition, out, processed, self._prepare(partition, out, processed),
                                    dict(self.processor.precisions)))
            self.events += len(records)
            if self._assigned_at is not None:
                self.recovery_seconds = time.monotonic() - self._assigned_at
                self._assigned_at = None
            self.batches += 1
            # at least once: the batch is acked once committed (not before: with the group offset ahead
            # of the stored watermark, a takeover resumed past the table and the failover test once saw a
            # new owner repeat seqs from a stale book), but the next batch need not wait for that
            return None if self.settings.exactly_once else self.commits.barrier()

    async def stored(self, durable: asyncio.Future[None] | None) -> None:
        """Until a batch's commits (``handle``'s future) are durable; a commit that failed is raised after
        the state is restored from the table, as :meth:`_settle` does."""
        if durable is None:
            return
        try:
            await durable
        except Exception:
            with contextlib.suppress(Exception):
                await self.commits.settle()  # the error is raised once, here
            self._reset()
            raise

    async def _add(self, job: Job) -> None:
        """Queue a job in its lane; an earlier commit's failure, raised here, resets the state as
        :meth:`_settle` does (the batch is fetched again and processed from the table)."""
        try:
            await self.commits.add(job)
        except Exception:
            self._reset()
            raise

    async def _settle(self) -> None:
        """Wait for the commits in flight. One that failed leaves the in-memory state ahead of the
        table: everything is then forgotten and restored from the table (what committed) on next use."""
        try:
            await self.commits.settle()
        except Exception:
            self._reset()
            raise

    def _reset(self) -> None:
        self.processor.forget()
        self.store.forget()
        self._resumed.clear()
        self._seen.clear()
        self._done.clear()

    def _prepare(self, partition: int, out: list[Output], processed: dict[int, int]) -> dict[int, list[Any]]:
        """The table records of a partition's batch, from its pairs as they stand now."""
        states = [st for st in self.processor.pairs.values() if st.last_partition == partition]
        deltas = [o.record for o in out if isinstance(o.record, BookDeltaRecord)]
        for delta in deltas:
            if delta.checksum_ok is False:
                st = self.processor.pairs.get(delta.exchange_symbol)
                log.warning("%s seq %d (raw %d/%d): checksum mismatch at precision %s (last verified at %s); "
                            "resyncing", delta.exchange_symbol, delta.seq, delta.raw_partition, delta.raw_offset,
                            st.book.precision if st and st.book else None, st.verified_precision if st else None)
        return self.store.changes(states, deltas, processed, self.processor.lock_generations)

    async def _commit(self, jobs: list[Job]) -> Awaitable[None] | None:
        """Deliver the jobs' outputs and store their pairs' changes: in one transaction under exactly-once
        (every partition of the lane), else outputs first, then, as a second stage (the lane's next
        outputs go meanwhile), the changelog, then RocksDB."""
        known = next((j.precisions for j in reversed(jobs) if j.precisions is not None), None)
        if self.transactions is None:
            out, processed, changes = merged(jobs)
            await self._deliver(out)
            if changes or processed:
                return self._store(changes, processed, known)
            self._publish_precisions(known)
            return None
        else:
            live = [j for j in jobs if j.partition not in self._fenced]  # fenced: the new owner redoes them
            out, processed, changes = merged(live)
            if out or changes:
                partitions = sorted({j.partition for j in live} | set(changes))
                try:
                    committed = await self.transactions.commit(partitions, self._by_topic(out),
                                                               self.store.changelog_topic(), changes)
                except Fenced as exc:
                    for partition in exc.partitions:
                        self._give_up(partition)
                    return None
                self.store.apply(committed.changelog, committed.offsets)
            if processed:
                self._done.update(processed)
            self._publish_precisions(known)
        return None

    async def _store(self, changes: dict[int, list[Any]], processed: dict[int, int],
                     known: dict[str, Any] | None) -> None:
        """At least once, after the outputs: the changelog, then the local RocksDB."""
        if changes:
            self.store.apply(changes, await self._log_changes(changes))
        if processed:
            self._done.update(processed)
        self._publish_precisions(known)

    def _give_up(self, partition: int) -> None:
        """Fenced: forget the partition's pairs (their state may be ahead of what committed) and skip
        its events until the rebalance that moved it reaches this worker."""
        self._fenced.add(partition)
        self.processor.forget([s for s, st in self.processor.pairs.items() if st.last_partition == partition])
        self.store.forget()
        self._resumed.discard(partition)
        self._seen.pop(partition, None)
        self._done.pop(partition, None)

    def _by_topic(self, out: list[Output]) -> dict[str, list[TimedRecord]]:
        by_topic: dict[str, list[TimedRecord]] = {}
        for o in out:
            by_topic.setdefault(self.settings.topic(o.topic), []).append((o.key.encode(), encode(o.record),
                                                                          o.timestamp_ms))
        return by_topic

    def failed(self, exc: BaseException) -> None:
        """The batch raised out of :meth:`handle` (the agent restarts and gets it again): a strike for the
        record it was processing; at :data:`MAX_STRIKES` that record is dead-lettered and skipped."""
        if self._current is not None:
            count = self._strikes.get(self._current, (0, ""))[0] + 1
            self._strikes[self._current] = (count, f"{type(exc).__name__}: {str(exc)[:200]}")
            self._current = None

    def _process(self, record: RawRecord, out: list[Output]) -> None:
        self._partition = record.partition
        try:
            self.processor.process_into(record, out)
        except Exception as exc:  # a bug must cost one frame (dead-lettered), never the worker
            reason = f"internal error: {type(exc).__name__}: {str(exc)[:200]}"
            log.error("frame at %s/%s could not be processed: %s", record.partition, record.offset, reason,
                      exc_info=not isinstance(exc, RecursionError))
            try:
                self.processor.fail(record, reason, out)
            except Exception:  # the last resort must not raise either: the record is still dead-lettered
                out.append(_dead_letter(record, record.partition, reason))

    async def _resume(self, partition: int) -> bool:
        """First event of a partition since it was assigned: where its stored effects end. False when
        the partition is not this worker's (fenced)."""
        if self.transactions is not None:
            if self.transactions.is_fenced(partition):
                self._give_up(partition)
                return False
            await self.transactions.open()  # a transaction this worker's killed run left open is aborted
            await self._take_over(partition)
        self._resumed.add(partition)
        done, generation = self.store.watermark(partition)
        if generation is not None and generation > self.processor.lock_generations.get(partition, -1):
            self.processor.lock_generations[partition] = generation  # fencing survives a takeover
        if done is not None:
            self._done[partition] = done
        return True

    async def _take_over(self, partition: int) -> None:
        """Fence the partition's last committer, then read what committed after the local state.

        The committer named by the local state is fenced first (its open transaction, if any, is aborted
        rather than waited for); the changelog read after that may name another one (a former owner that
        committed after the local state was recovered): that one is fenced and the read done again. A
        fenced producer commits nothing more without the group check (``agents/transactions.py``), so
        each id is fenced once per assignment.
        """
        assert self.transactions is not None
        own = self.transactions.transactional_id
        committer = self.store.committer(partition)
        while True:
            if committer is not None and committer != own:
                await self._fence_once(partition, committer, f"its last committer {committer}")
            await self._catch_up_changelog(partition)
            after = self.store.committer(partition)
            if after is None or after == own or after in self._fenced_ids:
                return
            committer = after  # a former owner committed after the local state: fence it, read again

    async def _catch_up_changelog(self, partition: int) -> None:
        """Apply the changelog records committed after the local store's offset (read_committed).

        Faust's recovery reads the changelog up to the highwater it saw when the partition was assigned;
        a former owner (a worker that paused past its session) may have committed after that, and may
        have a transaction open still: the read waits until none is (it commits, or the group check makes
        it abort). Processing from the older local state would repeat its seqs.
        """
        db = PartitionDB(self.store.table, partition)
        local = db.changelog_offset()
        records, last = await committed_tail(self.settings.kafka_bootstrap, kafka_client_config(self.settings),
                                             self.store.changelog_topic(), partition, -1 if local is None else local,
                                             stable=True, on_open=self._fence_holders)
        if last is None:
            return
        log.warning("raw partition %d: %d books changelog records were committed after this worker's local state "
                    "(changelog offset %s); applying them before processing", partition, len(records), local)
        self.store.apply({partition: records}, {partition: last})
        self.changelog_caught_up += len(records)

    async def _fence_holders(self, tp: Any) -> None:
        """A transaction is open on the changelog partition this worker takes over, and nothing committed
        names its holder: a former owner paused inside its first transaction of an assignment. Fence the
        holder, as a named committer is; without it the read waits out the transaction's timeout."""
        assert self.transactions is not None
        try:
            holders = await self.transactions.open_holders(tp.topic, tp.partition)
        except KafkaError as exc:
            log.warning("raw partition %d: could not ask the brokers who holds its open transaction (%s); waiting "
                        "for it to end", tp.partition, exc)
            return
        for holder in holders:
            await self._fence_once(tp.partition, holder, f"{holder}, which holds a transaction open on it,")

    async def _fence_once(self, partition: int, transactional_id: str, who: str) -> None:
        """Fence ``transactional_id`` (``who``, for the log) before taking ``partition`` over, unless it was
        fenced already (a fenced producer commits nothing more without the group check)."""
        assert self.transactions is not None
        if transactional_id in self._fenced_ids:
            return
        log.info("raw partition %d: fencing %s before taking it over", partition, who)
        await self.transactions.fence_id(transactional_id)
        self._fenced_ids.add(transactional_id)

    async def _read_gap(self, partition: int, start: int, end: int, out: list[Output],
                        processed: dict[int, int], unstored: bool = False) -> None:
        """Process raw records ``start``..``end - 1`` of ``partition``, read directly: the consumer group
        resumed past the stored watermark (a takeover), or skipped records (seen after rebalances).
        ``unstored``: the table holds nothing of the partition, and the range is what the topic still has
        before ``end`` (its beginning removed by retention is no loss: nobody owed it)."""
        stored = self._seen.get(partition, self._done.get(partition))
        if not unstored:  # unstored: said once read (the topic may hold nothing before ``end``)
            if stored is not None and start == stored + 1 and partition not in processed:
                log.warning("raw partition %d resumes at offset %d but the books table holds offsets up to %d: "
                            "processing the %d records in between first", partition, end, start - 1, end - start)
            else:
                log.warning("raw partition %d: the consumer skipped offsets %d..%d; reading them directly",
                            partition, start, end - 1)
        records, first = await read_range(self.settings.kafka_bootstrap, self.settings.raw_topic, partition,
                                          start, end, kafka_client_config(self.settings))
        if unstored:
            if records:
                log.warning("raw partition %d resumes at offset %d but the books table holds nothing of it: "
                            "processing the %d records before it first", partition, end, len(records))
        elif first > start:
            self.lost_records += first - start
            self._lost.add(partition)
            log.error("raw partition %d: offsets %d..%d are gone (kraken.raw retention, KRAKENFLOW_RAW_RETENTION_HOURS)"
                      " before any worker processed them; the partition's books resync", partition, start, first - 1)
            for st in [st for st in self.processor.pairs.values() if st.last_partition == partition and st.book]:
                self.processor.invalidate(st, f"raw offsets {start}..{first - 1} lost to retention", None)
        for record in records:
            self._process(record, out)
            processed[partition] = record.offset
        self.caught_up += len(records)

    async def _deliver(self, out: list[Output]) -> None:
        """Produce outputs grouped by topic and wait until the broker has them all.

        Retries until delivered: giving up would let Faust ack the batch with its outputs lost.
        A retry may duplicate records; their ``raw_partition``/``raw_offset`` lineage identifies them.
        """
        if not out:
            return
        by_topic = self._by_topic(out)
        backoff: Backoff | None = None  # made on the first failure (its random generator seeds from the OS)
        while True:
            try:
                futures = []
                for topic, records in by_topic.items():
                    futures.extend(await self.writer.send_keyed(topic, records))
                await asyncio.gather(*futures)
                return
            except KafkaError as exc:
                self.delivery_retries += 1
                backoff = backoff or Backoff(base=0.2, cap=10.0)
                delay = backoff.next_delay()
                log.warning("output delivery failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    async def _log_changes(self, changes: dict[int, list[Any]]) -> dict[int, int | None]:
        """Write the store's changes to the changelog (at least once), retrying until the broker has
        them: the store counts them as written already, so giving up would let RocksDB drift."""
        backoff: Backoff | None = None
        topic = self.store.changelog_topic()
        while True:
            try:
                writer = self.changelog_writer or self.writer
                sent = {p: await writer.send_partition(topic, p, records, single_tail=self.store.single_tail)
                        for p, records in changes.items()}
                await asyncio.gather(*(f for futures in sent.values() for f in futures))
                return {p: futures[-1].result().offset for p, futures in sent.items()}  # type: ignore[attr-defined]
            except KafkaError as exc:
                self.delivery_retries += 1
                backoff = backoff or Backoff(base=0.2, cap=10.0)
                delay = backoff.next_delay()
                log.warning("changelog write failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    def _publish_precisions(self, known: dict[str, Any] | None) -> None:
        """Into the instruments table (every worker's), once the batches that learned them committed: a
        redo of batches whose transaction aborted must not find what they alone learned (it formats a
        book's levels), or its deltas would differ from the aborted ones a read_uncommitted reader kept."""
        for symbol, precision in (known or {}).items():
            if self._published.get(symbol) != precision:
                self.remember_precision(symbol, precision)
                self._published[symbol] = precision

    async def tick(self) -> None:
        """Staleness, stuck resyncs and metrics, once a second. Its outputs join the lanes like a batch's
        and are not waited for: a tick that waited for its commit under the lock held up the next batch
        by a transaction or two each second (exactly-once receive -> emitted p99 at 1k frames/s: 13.8 ms
        before, 8.3-10.5 ms in three runs after; bench/pipeline.py)."""
        async with self._lock:
            if not self._started:
                return
            partitions = {st.last_partition for st in self.processor.pairs.values() if st.last_partition >= 0}
            for partition in sorted(partitions - self._fenced):
                out: list[Output] = []
                self.processor.tick(out, [st for st in self.processor.pairs.values()
                                          if st.last_partition == partition])
                if out:
                    await self._add(Job(partition, out, {}, self._prepare(partition, out, {})))

    async def on_rebalance(self, assigned: bool, partitions: Iterable[int] = ()) -> None:
        """Partitions moved: every pair is restored from the table when next seen.

        State kept from before could be stale (another worker may have owned a partition meanwhile),
        and the table holds exactly what was flushed, so dropping everything is the safe choice. The
        commits in flight settle first, on a revocation too: the worker then never commits a partition in
        a group generation it is not in (the group check of ``agents/transactions.py`` covers a worker that
        could not run this, a paused one).
        """
        async with self._lock:
            try:
                await self._settle()  # the last batch's commits, before its partitions may move
            except Exception as exc:  # state is reset below anyway
                log.warning("a book batch did not commit before the rebalance: %r", exc)
            self._reset()
            self._fenced.clear()
            self._fenced_ids.clear()
            self._assigned = set(partitions) if assigned else set()
            self._lost.clear()
            if assigned:
                self.rebalances += 1
                self._assigned_at = time.monotonic()
                if self.transactions is not None:
                    self.transactions.assign(self._assigned)

    async def close(self, timeout: float = 10.0) -> None:
        """Stop the producers (a worker shutting down), once the batch in flight is stored; a batch that
        cannot be stored within ``timeout`` (broker gone) is left to the next owner."""
        try:
            await asyncio.wait_for(self._lock.acquire(), timeout)
        except TimeoutError:
            log.warning("the batch in flight did not commit within %.0f s; stopping without it", timeout)
        else:
            try:
                await asyncio.wait_for(self._settle(), timeout)
            except Exception as exc:  # a timeout too
                log.warning("the last batch did not commit before the stop (%r); the next owner redoes it", exc)
            finally:
                self._lock.release()
        if self.transactions is not None:
            await self.transactions.close()
        if self._started:
            self._started = False
            await self.writer.stop()
            if self.changelog_writer is not None:
                await self.changelog_writer.stop()

    def consumer_lag(self, app: Any) -> dict[int, int]:
        """Records of each assigned raw partition not yet processed (highwater - processed)."""
        lag: dict[int, int] = {}
        try:
            assignment = app.consumer.assignment()
        except Exception:  # not started yet
            return lag
        for tp in assignment:
            if tp.topic != self.settings.raw_topic:
                continue
            highwater = app.consumer.highwater(tp)
            if highwater is not None:
                lag[tp.partition] = max(0, highwater - self._done.get(tp.partition, -1) - 1)
        return lag

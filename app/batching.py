"""Whole fetched batches for the book agent: Faust's consumer drain loop without per-event dispatch.

Faust's consumer hands every record to the streams one at a time: per record a task pair and an
``asyncio.wait`` (``wait_first``), the conductor's lock, the topic's decode and queue, the stream's
iteration, its processors and an ack, about 70 us, which is the book worker's ceiling (the book work is
~10 us a frame). The consumer here (mixed into both profiles' transports, :mod:`app.profile`) drains
differently for the topics that have a :class:`BatchChannel`: what one fetch returned for the topic,
every partition's records, goes to the channel as one :class:`Batch`, the agent processes it and says
so, and the consumer then acks every record of it in one step. Records of every other topic (changelogs in recovery, trades for
the candles, the control topic) take Faust's own path unchanged.

Semantics kept: offsets are acked only after the agent finished the batch (Faust commits acked offsets
as before), and when the agent says the batch is durable only later (at least once: its commit is in
flight while the agent takes the next batch), they are acked then, if the partition is still this
consumer's in the same group generation, and a batch whose commit failed is fetched again from its
first offset; a rebalance (``suspend_flow``) stops the wait for a batch in flight, offsets below the read
offset are dropped as Faust drops them, gaps are registered for the commit, and Faust's stall detection
sees the partition as processed. A batch whose processing raised is not acked: the partition is sought
back to its first offset in the batch, so the restarted agent gets it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from time import monotonic
from typing import Any

from aiokafka.errors import IllegalStateError

log = logging.getLogger("krakenflow.batching")


class Batch:
    """The records one fetch returned for a topic, each partition's in offset order (aiokafka
    ConsumerRecords: ``.partition .offset .key .value .headers``)."""

    __slots__ = ("_done", "records")

    def __init__(self, records: Sequence[Any], done: asyncio.Future[asyncio.Future[None] | None]) -> None:
        self.records = records
        self._done = done

    def processed(self, error: BaseException | None = None, durable: asyncio.Future[None] | None = None) -> None:
        """The agent is through with the batch (``error``: it was not processed; ``durable``: done when
        its effects are stored, the time to ack it)."""
        if self._done.done():  # the consumer stopped waiting (a rebalance)
            return
        if error is None:
            self._done.set_result(durable)
        else:
            self._done.set_exception(error)


class BatchChannel:
    """Batches of one topic, from the consumer to the one agent that iterates this channel."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=1)
        self.batches = 0
        self.records = 0

    async def deliver(self, records: Sequence[Any]) -> asyncio.Future[None] | None:
        """Hand ``records`` to the agent and wait until it processed them (its error is raised here);
        returns the agent's future of their being stored, if they are not yet."""
        done: asyncio.Future[asyncio.Future[None] | None] = asyncio.get_running_loop().create_future()
        await self._queue.put(Batch(records, done))
        durable = await done
        self.batches += 1
        self.records += len(records)
        return durable

    def __aiter__(self) -> AsyncIterator[Batch]:
        return self

    async def __anext__(self) -> Batch:
        return await self._queue.get()


def batch_channels(app: Any) -> dict[str, BatchChannel]:
    """The app's channels by topic name (none: every topic takes Faust's per-event path)."""
    channels: dict[str, BatchChannel] | None = getattr(app, "batch_channels", None)
    return channels or {}


class BatchDrainMixin:
    """Mixed into a Faust aiokafka ``Consumer``: the drain loop described in the module docstring.

    It uses the base consumer's offset bookkeeping (``_read_offset``, ``_acked``, ``_acked_index``,
    ``_committed_offset``, ``_n_acked``, ``_add_gap``) the way Faust's own drain loop and ``ack`` do
    (faust-streaming 0.15); ``tests/e2e/test_pipeline.py`` checks that every record takes this path.
    """

    async def _drain_messages(self, fetcher: Any) -> None:
        this: Any = self
        channels = batch_channels(this.app)
        if not channels:
            await super()._drain_messages(fetcher)  # type: ignore[misc]
            return
        callback = this.callback
        consumer_should_stop = this._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = this._read_offset
        acks_enabled_for = this.app.topics.acks_enabled_for
        self._rewind: dict[Any, int] = {}
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                if self._rewind:
                    await self._rewind_failed()
                records, active = await this._wait_next_records(1.0)
                await asyncio.sleep(0)  # as Faust's loop: never hold the event loop across fetches
                if not records or this.should_stop:
                    continue
                if not this.flow_active:
                    await self._seek_committed()  # a rebalance began: back to the committed offsets
                    continue
                generation = this.app.consumer_generation_id
                # the fetch's records of the channels' topics, every partition in one batch (the agent
                # commits the partitions concurrently), and Faust's own path for the other topics
                taken: dict[str, list[tuple[Any, list[Any]]]] = {}
                for tp, batch in records.items():
                    if not this.flow_active or this.app.consumer_generation_id != generation:
                        break  # a rebalance began while this fetch was handled
                    if active is not None and tp not in active and tp not in this._buffered_partitions:
                        continue
                    r_offset = read_offset[tp]
                    if r_offset is not None:
                        batch = [r for r in batch if r.offset >= r_offset]  # seen before (Faust drops them too)
                    if not batch:
                        continue
                    first = batch[0].offset
                    if r_offset and first - r_offset > 1 and acks_enabled_for(tp.topic):
                        await this._add_gap(tp, r_offset + 1, first)
                    if tp.topic in channels:
                        taken.setdefault(tp.topic, []).append((tp, batch))
                    elif not await self._per_record(tp, batch, callback):
                        break
                for topic, parts in taken.items():
                    if not this.flow_active or this.app.consumer_generation_id != generation:
                        break
                    if not await self._deliver(channels[topic], parts):
                        break
                if this._commit_every is not None and this._n_acked >= this._commit_every:
                    this._n_acked = 0
                    await this.commit()
        except this.consumer_stopped_errors:
            if this.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if this.transport.app.should_stop:
                return
            raise

    async def _deliver(self, channel: BatchChannel, parts: list[tuple[Any, list[Any]]]) -> bool:
        """One batch to the channel's agent, then every record of it acked; False when it was not
        processed (a rebalance, a stop, or the agent raised: then each partition is sought back)."""
        this: Any = self
        monitor = this.app.monitor
        for tp, _ in parts:
            monitor.track_tp_end_offset(tp, this.highwater(tp))
        records = parts[0][1] if len(parts) == 1 else [r for _, batch in parts for r in batch]
        delivery = channel.deliver(records)
        try:
            waited = await this.wait_first(delivery, this.suspend_flow.wait())
        except Exception as exc:  # the agent raised: nothing acked, the batch comes again
            log.warning("a batch of %d records was not processed (%r); fetching it again", len(records), exc)
            assigned = this.assignment()
            for tp, batch in parts:
                if tp not in assigned:  # revoked meanwhile: its new owner reads it
                    continue
                try:
                    await this.seek(tp, batch[0].offset)
                except IllegalStateError:  # revoked while seeking: likewise
                    continue
                this._read_offset[tp] = None
            return False
        if delivery not in waited.done:  # a rebalance or a stop: nothing acked, the fetch is void
            return False
        durable = waited.results[waited.done.index(delivery)]
        now = monotonic()
        for tp, batch in parts:
            this._read_offset[tp] = batch[-1].offset
            monitor.stream_inbound_time[tp] = now  # Faust's stall detection
        if durable is None:
            for tp, batch in parts:
                self._ack_all(tp, batch)
        else:
            generation = this.app.consumer_generation_id
            durable.add_done_callback(lambda stored: self._stored(stored, parts, generation))
        return True

    def _stored(self, durable: asyncio.Future[None], parts: list[tuple[Any, list[Any]]], generation: int) -> None:
        """A delivered batch's effects are stored (ack it) or failed to be (fetch it again), unless its
        partitions changed hands meanwhile: then their new owner reads from the stored watermark."""
        this: Any = self
        if this.app.consumer_generation_id != generation:
            return
        assigned = this.assignment()
        failed = durable.cancelled() or durable.exception() is not None
        for tp, batch in parts:
            if tp not in assigned:
                continue
            if failed:
                first = batch[0].offset
                self._rewind[tp] = min(first, self._rewind.get(tp, first))
            else:
                self._ack_all(tp, batch)

    async def _rewind_failed(self) -> None:
        """Seek each partition whose batch's commit failed back to that batch's first offset: the
        records after it the agent skips as replays or reads again from the table's watermark."""
        this: Any = self
        rewind, self._rewind = self._rewind, {}
        assigned = this.assignment()
        for tp, offset in rewind.items():
            if tp not in assigned:
                continue
            log.warning("a commit of %s failed: fetching again from offset %d", tp, offset)
            try:
                await this.seek(tp, offset)
            except IllegalStateError:  # revoked while seeking: its new owner reads it
                continue
            this._read_offset[tp] = None

    async def _seek_committed(self) -> None:
        """Faust's ``perform_seek``, surviving the assignment changing under it: aiokafka raises
        ``IllegalStateError`` for a partition revoked while it seeks, which would crash Faust's fetcher
        and stop the worker. The rebalance that revoked it seeks the new assignment itself."""
        this: Any = self
        try:
            await this.perform_seek()
        except IllegalStateError as exc:
            log.info("the assignment changed while seeking to the committed offsets (%s)", exc)

    async def _per_record(self, tp: Any, batch: Sequence[Any], callback: Any) -> bool:
        """Faust's own path for a topic without a channel; False when a rebalance stopped it."""
        this: Any = self
        to_message = this._to_message
        for record in batch:
            if not this.flow_active:
                return False
            this.app.monitor.track_tp_end_offset(tp, this.highwater(tp))
            await this.wait_first(callback(to_message(tp, record)), this.suspend_flow.wait())
            this._read_offset[tp] = record.offset
        return True

    def _ack_all(self, tp: Any, batch: Sequence[Any]) -> None:
        """Faust's ``Consumer.ack`` for every record of ``batch`` at once."""
        this: Any = self
        committed = this._committed_offset[tp]
        index = this._acked_index[tp]
        acked = this._acked[tp]
        added = 0
        for record in batch:
            offset = record.offset
            if (committed is None or offset >= committed) and offset not in index:
                index.add(offset)
                acked.append(offset)
                added += 1
        this._n_acked += added
        waiting = this._waiting_for_ack
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

"""The thin ingest: Kraken frames -> ``kraken.raw``, verbatim, keyed by pair.

* Exactly one live ingest per cluster: every candidate (each worker, or ``krakenflow ingest``
  processes) joins the consumer group ``<app_id>-ingest`` on the one-partition topic
  ``kraken.ingest.lock``; the member assigned that partition is the live ingest (``ingest/election.py``).
  When it stops or dies the group rebalances and another candidate takes over (after the session
  timeout for a SIGKILL).
* Kraken's connect budget is spent once per fault: a connection dropped because Kafka was away comes
  back once Kafka answers again; a lock lost and won back with nobody streaming in between keeps its
  connections; an ingest that stood still (a pause) holds its frames back until the group says it
  still holds the lock, and stands by if another took over.
* Records: key = pair (``BTC/USD``) for pair frames, ``conn:<id>`` for connection frames; headers
  ``recv_ns``, ``conn_id``, ``seq`` (per connection), ``lock_gen``, and ``prec`` (the pair's precision, so
  a worker formats each book from its own partition). acks=all; one partition per pair keeps order.
* Pairs are spread over connections of at most ``pairs_per_connection`` pairs.
* Resync requests from book agents arrive on ``kraken.control``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from app.kafka_internals import reuse_zstd_contexts
from app.security import kafka_client_config
from app.settings import Settings
from app.topics import ensure_topics
from ingest.connection import FrameSink, KrakenConnection, SinkUnavailable
from ingest.election import Election, lock_consumer
from ingest.raw import PrecisionStamps, raw_record
from ingest.rotation import Handover, rotate_forever
from models.backoff import Backoff
from models.connect_limit import ConnectLimiter
from models.histogram import LatencyHistogram
from models.kraken.wire import channel_of

log = logging.getLogger("krakenflow.ingest")

#: the lock group's session timeout and heartbeat interval (seconds)
SESSION_TIMEOUT, HEARTBEAT_INTERVAL = 6.0, 1.0
#: a process that stood still this long (SIGSTOP, a paused VM) may have lost its group session: it holds
#: its frames back until the group says whether it still holds the lock
STILL_AFTER = SESSION_TIMEOUT / 2


class IngestStats:
    """Counters the metrics module exports (kept here so the ingest has no metrics dependency)."""

    def __init__(self) -> None:
        self.frames: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self.dropped = 0  # frames Kafka did not take: each pair's book resyncs, connection frames are logged
        self.sent = 0
        self.kafka_drops = 0  # Kraken connections dropped because Kafka could not take frames
        self.lock_releases = 0  # times the lock was given up because Kafka took no frame for too long
        self.producer_renewals = 0  # producers replaced after losing a batch (see Ingest._renew_producer)
        self.rotations = 0  # connections replaced, make before break (ingest/rotation.py)
        self.connects = 0  # Kraken connects attempted (Kraken allows about 150 per 10 minutes per IP)
        self.suspensions = 0  # times frames were held back while the lock was in doubt
        self.task_restarts: dict[str, int] = {}  # supervised tasks that died and were restarted
        self.in_flight = 0
        self.send_latency = LatencyHistogram()


class Ingest:
    """Holds the Kraken connections and the producer while this process is the live ingest."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = IngestStats()
        #: the pairs' precisions, stamped on their frames (``ingest/raw.py``)
        self.stamps = PrecisionStamps()
        self.connections: list[KrakenConnection] = []
        self.active = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.connection_tasks: list[asyncio.Task[None]] = []  # one per connection, in step with connections
        self.handovers: dict[int, tuple[Handover, KrakenConnection]] = {}  # rotations under way
        self._instance = f"{socket.gethostname()}:{os.getpid()}"
        self._failing_since: float | None = None  # monotonic time of the first failed send since a success
        self._background: set[asyncio.Task[Any]] = set()
        self._renewal: asyncio.Task[None] | None = None
        self._run_task: asyncio.Task[Any] | None = None
        self._producer_ready = asyncio.Event()
        self._lost: set[str] = set()  # pairs whose lost frames were logged since the producer started
        self.lock_generation = -1
        #: set while frames may go out; cleared while the lock is in doubt (see :meth:`suspend`)
        self.writable = asyncio.Event()
        self._ticked = time.monotonic()  # the clock watch's last tick (see _stood_still)
        self._suspended_since = 0.0  # monotonic time frames were last held back
        #: one start or stop of the role at a time (the rebalance listener, and the campaign's retries)
        self._role = asyncio.Lock()
        #: one connect limit for every Kraken connection of this process (Kraken counts per IP)
        self.limiter = ConnectLimiter(settings.connect_limit, settings.connect_window)

    # -- election ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Campaign for the ingest role forever; run the connections while holding it."""
        s = self.settings
        self._run_task = asyncio.current_task()
        await ensure_topics(s)
        while True:
            await self._campaign()
            await asyncio.sleep(s.ingest_release_after)  # stand aside; then campaign again

    async def withdraw(self, timeout: float = 2.0) -> None:
        """End :meth:`run` (a worker that stops): leave the election first, so the lock is not won by a
        process on its way out, and stop streaming (the producer flushes)."""
        task = self._run_task
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # Exception: the timeout, or its end
            await asyncio.wait_for(asyncio.shield(task), timeout)

    async def _campaign(self) -> None:
        """Be a candidate until this process, holding the lock, cannot get frames into Kafka for
        ``ingest_release_after``: then leave the group, so a standby that can reach Kafka takes over."""
        s = self.settings
        lock = lock_consumer(self, SESSION_TIMEOUT, HEARTBEAT_INTERVAL, self._instance)
        listener = Election(self, lock, TopicPartition(s.topic("ingest.lock"), 0), self._instance)
        await lock.start()
        try:
            lock.subscribe([s.topic("ingest.lock")], listener=listener)
            while True:
                await lock.getmany(timeout_ms=1000)  # keeps group membership; the lock has no data
                if listener.holds and not self.active.is_set():
                    await self.hold_lock(listener, session_lost=False)  # a takeover not recorded yet: again
                elif self.active.is_set() and not self.writable.is_set() and await listener.confirm():
                    self.resume("the group still counts this process as the lock holder")
                if self.active.is_set() and self.failing_for() > s.ingest_release_after:
                    log.error("Kafka has taken no frame for %.0f s: releasing the ingest lock for %.0f s so a "
                              "standby can take over", self.failing_for(), s.ingest_release_after)
                    self.stats.lock_releases += 1
                    return
                if self.active.is_set() and self.suspended_for() > s.ingest_release_after:
                    # never expected (a rebalance settles a doubt in seconds), but a stream held back for good
                    # would be a live ingest that writes nothing: give the lock up, as above
                    log.error("frames held back for %.0f s with the ingest lock still in doubt: releasing it for "
                              "%.0f s", self.suspended_for(), s.ingest_release_after)
                    self.stats.lock_releases += 1
                    return
        finally:
            # the lock consumer's leave can complete a rebalance that hands us the lock once more: a
            # campaign that is ending must not start streaming again (a stopping process would publish)
            listener.open = False
            async with self._role:  # after a start the listener may have under way
                await self.stop_streaming()
            await lock.stop()

    async def hold_lock(self, election: Election, session_lost: bool) -> None:
        """The lock is ours in ``election.generation``: start streaming, or carry on.

        Won back after our group session was lost: if nobody else took the lock meanwhile (the takeover
        record is still ours), every frame went out under our generation or is still held here, so the
        Kraken connections carry on; otherwise another ingest streamed, the books follow its snapshots,
        and ours start over on fresh connections."""
        async with self._role:
            if election.holds and election.open:  # not moved on while this waited
                await self._hold_lock(election, session_lost)

    async def release_lock(self) -> None:
        """Another ingest holds the lock: stop streaming (a woken ingest that was live stands by)."""
        async with self._role:
            await self.stop_streaming()

    async def _hold_lock(self, election: Election, session_lost: bool) -> None:
        if self.active.is_set() and session_lost:
            if await election.still_ours():
                log.warning("ingest lock won again after losing the group session, and no other ingest took it "
                            "meanwhile: carrying on with the same Kraken connections")
            else:
                log.warning("ingest lock won again after losing the group session; another ingest may have "
                            "streamed meanwhile: reconnecting to Kraken for fresh snapshots")
                await self.stop_streaming()
        if self.active.is_set():
            self.lock_generation = election.generation  # frames held back go out under it
            self.resume("the lock is held")
            return
        if await election.record_takeover():
            self.lock_generation = election.generation
            await self.start_streaming()

    def suspend(self, why: str) -> None:
        """Hold frames back (the sink waits; the socket buffers, then TCP pushes back on Kraken) until
        the group says who holds the lock: this process again (:meth:`resume`), or another one
        (:meth:`stop_streaming`: the held frames are dropped and the connections close)."""
        if self.active.is_set() and self.writable.is_set():
            self.writable.clear()
            self._suspended_since = time.monotonic()
            self.stats.suspensions += 1
            log.warning("holding frames back: %s; waiting for the ingest group to say who holds the lock", why)

    def resume(self, why: str) -> None:
        if not self.writable.is_set():
            self.writable.set()
            log.info("frames go out again: %s", why)

    def suspended_for(self) -> float:
        """Seconds frames have been held back (0: they go out)."""
        return 0.0 if self.writable.is_set() else time.monotonic() - self._suspended_since

    def _stood_still(self) -> None:
        """Suspend if this process stood still (SIGSTOP, a paused VM) long enough to lose its group session:
        checked before each frame as well as by the clock watch, as either may run first on waking."""
        now = time.monotonic()
        if now - self._ticked > STILL_AFTER:
            self.suspend(f"this process stood still for {now - self._ticked:.1f} s")
            self._ticked = now

    async def _watch_clock(self) -> None:
        while True:
            self._stood_still()
            self._ticked = time.monotonic()
            await asyncio.sleep(0.5)  # the clock watch's tick: a stop shows as a gap between ticks

    async def _connectable(self) -> None:
        """Before each Kraken connect, each of which spends Kraken's budget: wait while the lock is in
        doubt, and while Kafka takes no frames (a connection dropped for that comes back once)."""
        backoff = Backoff(base=0.5, cap=5.0)
        while True:
            await self.writable.wait()
            if self._failing_since is None or await self._kafka_answers():
                return
            await asyncio.sleep(backoff.next_delay())  # Kafka still away: ask again in a moment

    async def _kafka_answers(self) -> bool:
        """Kafka answers a metadata request and every raw partition has a leader."""
        producer = self._producer
        if producer is None:
            return False  # being replaced: its start waits for Kafka
        topic = self.settings.raw_topic
        try:
            cluster = await asyncio.wait_for(producer.client.fetch_all_metadata(), self.settings.ingest_send_timeout)
        except (KafkaError, TimeoutError):
            return False
        partitions = cluster.partitions_for_topic(topic) or set()
        return bool(partitions) and all(cluster.leader_for_partition(TopicPartition(topic, p)) not in (None, -1)
                                        for p in partitions)

    def _count_connect(self) -> None:
        self.stats.connects += 1

    async def start_streaming(self) -> None:
        if self.active.is_set():
            return
        s = self.settings
        log.info("this process is the live ingest: %d pairs from %s", len(s.pairs), s.kraken_url)
        self._producer = self._new_producer()
        self._failing_since = None
        self._lost.clear()
        self._ticked = time.monotonic()
        self.writable.set()
        await self._producer.start()
        self._producer_ready.set()
        chunk = max(1, s.pairs_per_connection)
        groups = [s.pairs[i:i + chunk] for i in range(0, len(s.pairs), chunk)]
        self.connections = [self.make_connection(n, pairs, self._publish) for n, pairs in enumerate(groups)]
        self.connection_tasks = [self.spawn(f"kraken-{n}", c.run) for n, c in enumerate(self.connections)]
        self._tasks = [self.spawn("control", self._control_loop), self.spawn("clock", self._watch_clock)]
        if s.rotate_after > 0:
            self._tasks += [self.spawn(f"rotate-{n}", partial(rotate_forever, self, n)) for n in range(len(groups))]
        self.active.set()

    def make_connection(self, n: int, pairs: tuple[str, ...], sink: FrameSink, rotation: int = 0) -> KrakenConnection:
        s = self.settings
        suffix = f".{rotation}" if rotation else ""
        return KrakenConnection(
            s.kraken_urls, pairs, s.depth, s.channels, sink, f"{self._instance}:{n}{suffix}",
            stale_after=s.stale_after, resync_min_interval=s.resync_min_interval, with_instrument=(n == 0),
            ping_interval=s.ping_interval, ping_timeout=s.ping_timeout, limiter=self.limiter,
            policy_wait=s.policy_wait, backoff=Backoff(cap=s.reconnect_backoff_cap),
            ready=self._connectable, on_connect=self._count_connect,
        )

    def spawn(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """A supervised task (restarted with backoff if it dies)."""
        return asyncio.create_task(self._supervise(name, run), name=f"ingest-{name}")

    async def stop_streaming(self) -> None:
        if not self.active.is_set():
            return
        self.active.clear()
        tasks = self._tasks + self.connection_tasks + ([self._renewal] if self._renewal is not None else [])
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks, self.connection_tasks, self._renewal = [], [], None
        self.handovers.clear()
        self._producer_ready.clear()
        if self._producer is not None:
            with contextlib.suppress(Exception):  # every frame sent so far acknowledged, or its failure known
                await asyncio.wait_for(self._producer.flush(), self.settings.ingest_send_timeout)
            await self._producer.stop()
            self._producer = None
            for _ in range(100):  # the deliveries' done-callbacks run over the next loop passes
                if self.stats.in_flight <= 0:
                    break
                await asyncio.sleep(0)
        log.info("ingest role released")

    def _new_producer(self) -> AIOKafkaProducer:
        s = self.settings
        reuse_zstd_contexts()  # a zstd context per 5 ms batch cost ~60 us; reused, ~3 us
        return AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap, linger_ms=s.ingest_linger_ms, client_id=f"ingest-{self._instance}",
            request_timeout_ms=int(s.ingest_send_timeout * 1000), **s.profile.producer_config(),
            **kafka_client_config(s),
        )

    async def _renew_producer(self, broken: AIOKafkaProducer) -> None:
        """Replace a producer that lost a batch. aiokafka's idempotent producer numbers each partition's
        batches as it sends them and never takes a number back: once a batch has failed (a leader
        gone for longer than the send timeout), the broker refuses every later batch to that partition
        with OutOfOrderSequenceNumber, for good. A new producer gets a new producer id and starts its
        sequences at 0. Frames wait for it (up to the send timeout, then the connection drops)."""
        s = self.settings
        self._producer_ready.clear()
        self._producer = None
        log.warning("replacing the Kafka producer: it lost a batch, and an idempotent producer refuses every "
                    "later frame to that partition")
        with contextlib.suppress(Exception):  # its unsent batches fail (their pairs resync)
            await asyncio.wait_for(broken.stop(), s.ingest_send_timeout)
        backoff = Backoff(base=0.5, cap=10.0)
        while True:
            producer = self._new_producer()
            try:
                await producer.start()
                break
            except Exception as exc:  # Kafka still down: keep trying while this process holds the lock
                log.warning("a new Kafka producer could not start (%s); retrying", exc)
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(backoff.next_delay())
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
        self._producer, self._renewal = producer, None
        self._lost.clear()
        self.stats.producer_renewals += 1
        self._producer_ready.set()

    # -- frames ------------------------------------------------------------------------------------

    async def _publish(self, text: str, recv_ns: int, connection_id: str, seq: int, key: str | None) -> None:
        stamp = self.stamps.stamp(text, key)  # first: what a dropped instrument frame taught still holds
        self._stood_still()
        if not self.writable.is_set():
            await self.writable.wait()  # the lock in doubt; cancelled with the connection if it is lost
        producer = self._producer
        if producer is None:
            if not self.active.is_set():
                self.stats.dropped += 1
                return
            producer = await self._renewed_producer()
        record_key, data, headers = raw_record(text, recv_ns, connection_id, seq, key, self.lock_generation, stamp)
        channel = channel_of(text)
        stats = self.stats
        stats.frames[channel] = stats.frames.get(channel, 0) + 1
        stats.bytes[channel] = stats.bytes.get(channel, 0) + len(data)
        sent_ns = time.monotonic_ns()
        try:
            future = await producer.send(self.settings.raw_topic, data, key=record_key, headers=headers)
        except KafkaError as exc:  # the producer's buffer stayed full for the send timeout
            raise self._unavailable(f"{type(exc).__name__}: {exc}") from exc
        stats.in_flight += 1
        future.add_done_callback(lambda f: self._delivered(f, producer, sent_ns, key))

    async def _renewed_producer(self) -> AIOKafkaProducer:
        """The producer that replaces a broken one, once it runs; SinkUnavailable after the send timeout."""
        try:
            await asyncio.wait_for(self._producer_ready.wait(), self.settings.ingest_send_timeout)
        except TimeoutError:
            pass
        if self._producer is None:
            raise self._unavailable("no Kafka producer: the one that lost a batch is still being replaced")
        return self._producer

    def _unavailable(self, why: str) -> SinkUnavailable:
        """A frame Kafka cannot take: counted, and the error that drops its Kraken connection."""
        self._failing()
        self.stats.dropped += 1
        self.stats.kafka_drops += 1
        return SinkUnavailable(why)

    def _failing(self) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()

    def _delivered(self, future: asyncio.Future[Any], producer: AIOKafkaProducer, sent_ns: int,
                   key: str | None) -> None:
        stats = self.stats
        stats.in_flight -= 1
        if future.cancelled() or future.exception() is not None:
            stats.dropped += 1
            self._failing()
            error = future.exception() if not future.cancelled() else "cancelled"
            if producer is self._producer and self._renewal is None and self.active.is_set():
                self._renewal = asyncio.get_running_loop().create_task(self._renew_producer(producer),
                                                                        name="ingest-producer-renewal")
            if key is None:
                log.error("connection frame not delivered to Kafka: %s", error)
                return
            # an update lost below the top 10 would never show in a checksum: the pair starts over
            if key not in self._lost:  # a lost batch fails many frames at once: one line per pair
                self._lost.add(key)
                log.error("a %s frame was not delivered to Kafka (%s): resyncing the pair", key, error)
            task = asyncio.get_running_loop().create_task(self.resync(key, "a frame was not delivered to Kafka"))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        else:
            stats.sent += 1
            self._failing_since = None
            stats.send_latency.observe_ns(time.monotonic_ns() - sent_ns)

    def failing_for(self) -> float:
        """Seconds since Kafka last refused a frame with none taken since (0: healthy)."""
        return 0.0 if self._failing_since is None else time.monotonic() - self._failing_since

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run a long-lived task for good: one that dies is logged with its exception, counted and
        restarted with backoff (never silently gone while the lock is held)."""
        backoff = Backoff(base=0.5, cap=30.0)
        while True:
            try:
                await run()
                log.error("ingest task %s returned; restarting it", name)
            except asyncio.CancelledError:
                raise
            except SystemExit:
                raise
            except Exception:
                log.exception("ingest task %s died; restarting it", name)
            self.stats.task_restarts[name] = self.stats.task_restarts.get(name, 0) + 1
            await asyncio.sleep(backoff.next_delay())

    async def resync(self, pair: str, reason: str) -> bool:
        for n, connection in enumerate(self.connections):
            if pair in connection.pairs:
                handover = self.handovers.get(n)
                if handover is not None and pair in handover[0].switched:
                    connection = handover[1]  # mid-rotation: the new connection carries the pair
                return await connection.resync(pair, reason)
        return False

    async def _control_loop(self) -> None:
        """Resync requests from book agents: ``{"action":"resync","symbol":"BTC/USD","reason":...}``."""
        s = self.settings
        consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False,
                                    client_id=f"ingest-control-{self._instance}", **kafka_client_config(s))
        await consumer.start()
        try:
            topic = s.topic("control")
            partitions = consumer.partitions_for_topic(topic) or {0}
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)  # only requests made while this process is the ingest
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        await self._on_control(record.value)
        finally:
            await consumer.stop()

    async def _on_control(self, value: bytes | None) -> None:
        try:
            request = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            log.warning("ignoring a control message that is not JSON: %r", (value or b"")[:100])
            return
        if isinstance(request, dict) and request.get("action") == "resync" and isinstance(request.get("symbol"), str):
            await self.resync(request["symbol"], str(request.get("reason", "requested")))

"""The one place where krakenflow changes aiokafka's behaviour through names aiokafka does not publish.

**The back-off between back-to-back transactions.** After a commit, the transaction coordinator is
still writing its markers for a moment; the next transaction's first AddPartitionsToTxn is answered
CONCURRENT_TRANSACTIONS meanwhile, and aiokafka sleeps a fixed ``BACKOFF_OVERRIDE`` (20 ms,
``aiokafka/producer/sender.py``) before asking again. A worker that commits a batch as soon as the
previous commit ends pays that sleep on every commit: it, not Kafka, set the exactly-once latency floor
(transactional group commit at 1k records/s, read_committed, p50 / p99: 27.5 / 54 ms with 20 ms, 6.1 /
20.8 ms with 1 ms; ``../shared/apache-kafka.md``). The coordinator answers within a millisecond or
two, so asking again after 1 ms costs a request or two, not a busy loop.

aiokafka reads the module global on every retry, so setting it changes every transactional producer
of the process. The versions this was checked against are pinned in ``pyproject.toml``;
``tests/unit/app/test_kafka_internals.py`` fails when the name or its use in aiokafka changes.

The other sections: group-generation fencing of transactions (KIP-447), empty control batches
(KAFKA-7467), the worker consumer's fetch wait while every partition is in the fetch, who holds a
transaction open on a partition (KIP-664 requests aiokafka lacks), and zstd compression with a reused
context.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiokafka
import aiokafka.codec as _codec
import aiokafka.consumer.fetcher as _fetcher
import aiokafka.producer.sender as _sender
import aiokafka.record._crecords.default_records as _c_records
import aiokafka.record.default_records as _py_records
import zstandard
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.producer.transaction_manager import TransactionState
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactString, Int16, Int32, Int64, Schema, TaggedFields

#: the aiokafka version whose private names this module relies on (also pinned in pyproject.toml)
AIOKAFKA_VERSION = "0.14.0"

#: seconds between asks while the coordinator still completes the previous transaction
TRANSACTION_BACKOFF = 0.001

#: the private name: a module global of aiokafka's sender, returned by AddPartitionsToTxnHandler
BACKOFF_NAME = "BACKOFF_OVERRIDE"


def shorten_transaction_backoff(seconds: float = TRANSACTION_BACKOFF) -> None:
    """Make aiokafka ask again after ``seconds`` (not 20 ms) when the previous transaction is still
    completing. Idempotent; raises if aiokafka no longer has the name (an unchecked upgrade)."""
    if not hasattr(_sender, BACKOFF_NAME):
        raise RuntimeError(f"aiokafka {aiokafka.__version__} has no {_sender.__name__}.{BACKOFF_NAME} (checked "
                           f"against {AIOKAFKA_VERSION}); review app/kafka_internals.py before upgrading aiokafka")
    setattr(_sender, BACKOFF_NAME, seconds)


# -- Group-generation fencing of transactions (KIP-447, which aiokafka does not implement) ----------------

#: the private name: the sender module's global that names the handler of TxnOffsetCommit
OFFSET_HANDLER_NAME = "TxnOffsetCommitHandler"

#: broker answers to a TxnOffsetCommit whose group membership is stale: the producer's worker no longer
#: owns what it is committing (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS,
#: FENCED_INSTANCE_ID)
STALE_MEMBERSHIP_ERRORS = frozenset({22, 25, 27, 82})


#: the attribute of aiokafka's TransactionManager that carries (generation, member id) to the handler
MEMBERSHIP_ATTR = "krakenflow_membership"
#: ... and the future the handler waits for before it sends the check
GATE_ATTR = "krakenflow_gate"


class StaleMembership(Exception):
    """The group coordinator refused a transaction's offsets: the generation or member id it carried is
    not the group's current one. The worker lost (or is losing) its partitions; the transaction must
    abort and its partitions wait for the next assignment."""

    def __init__(self, group_id: str, generation: int, member_id: str, error_code: int) -> None:
        super().__init__(f"group {group_id!r} refused generation {generation} member {member_id!r} "
                         f"(error {error_code}): this worker's assignment is stale")
        self.error_code = error_code


class TxnOffsetCommitResponse_v3(Response):
    API_KEY = 28
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("errors", CompactArray(
            ("topic", CompactString("utf-8")),
            ("partition_errors", CompactArray(("partition", Int32), ("error_code", Int16), ("tags", TaggedFields))),
            ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class TxnOffsetCommitRequest_v3(RequestStruct):
    """TxnOffsetCommit v3 (Kafka 2.5+): the first version that carries the group generation and member id,
    which the group coordinator checks (KIP-447)."""

    FLEXIBLE_VERSION = True
    API_KEY = 28
    API_VERSION = 3
    RESPONSE_TYPE = TxnOffsetCommitResponse_v3
    SCHEMA = Schema(
        ("transactional_id", CompactString("utf-8")),
        ("group_id", CompactString("utf-8")),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("generation_id", Int32),
        ("member_id", CompactString("utf-8")),
        ("group_instance_id", CompactString("utf-8")),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partitions", CompactArray(("partition_index", Int32), ("committed_offset", Int64),
                                        ("committed_leader_epoch", Int32),
                                        ("committed_metadata", CompactString("utf-8")), ("tags", TaggedFields))),
            ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class FencedTxnOffsetCommitRequest(Request[TxnOffsetCommitRequest_v3]):
    API_KEY = 28

    def __init__(self, transactional_id: str, group_id: str, producer_id: int, producer_epoch: int,
                 generation_id: int, member_id: str, topics: list[tuple[str, list[tuple[int, int, str]]]]) -> None:
        self._args = (transactional_id, group_id, producer_id, producer_epoch, generation_id, member_id)
        self._topics = topics

    def build(self, request_struct_class: type[TxnOffsetCommitRequest_v3]) -> TxnOffsetCommitRequest_v3:
        topics: list[tuple[str, list[tuple[int, int, int, str, dict[int, bytes]]], dict[int, bytes]]] = [
            (name, [(p, offset, -1, metadata, {}) for p, offset, metadata in parts], {}) for name, parts in self._topics]
        return request_struct_class(*self._args, None, topics, {})


class _FencedOffsetCommitHandler(_sender.TxnOffsetCommitHandler):  # type: ignore[misc]
    """aiokafka's handler, sending v3 with the membership a producer was given (:func:`send_offsets_fenced`)
    and turning a stale-membership answer into :class:`StaleMembership` for that transaction."""

    async def do(self, node_id: int) -> bool:
        gate = getattr(self._sender._txn_manager, GATE_ATTR, None)
        if gate is not None:  # the check goes out once the transaction's records are all in the log
            await asyncio.shield(gate)
        return bool(await super().do(node_id))

    def create_request(self) -> Any:
        membership = getattr(self._sender._txn_manager, MEMBERSHIP_ATTR, None)
        if membership is None:  # a producer that did not ask for fencing: aiokafka's own request
            return super().create_request()
        txn_manager = self._sender._txn_manager
        offset_data: dict[str, list[tuple[int, int, str]]] = {}
        for tp, offset in sorted(self._offsets.items()):
            offset_data.setdefault(tp.topic, []).append((tp.partition, offset.offset, offset.metadata))
        return FencedTxnOffsetCommitRequest(txn_manager.transactional_id, self._group_id, txn_manager.producer_id,
                                            txn_manager.producer_epoch, membership[0], membership[1],
                                            list(offset_data.items()))

    def handle_response(self, resp: Any) -> Any:
        if getattr(resp, "API_VERSION", 0) >= 3:  # as aiokafka's loop unpacks v0: (topic, [(partition, error)])
            resp.errors = [(entry[0], [(p[0], p[1]) for p in entry[1]]) for entry in resp.errors]
        for _topic, partitions in resp.errors:
            for _partition, code in partitions:
                if code in STALE_MEMBERSHIP_ERRORS:
                    self._refuse(code)
                    return None
        return super().handle_response(resp)

    def _refuse(self, code: int) -> None:
        """Fail the offsets' future and leave the transaction abortable. Not ``error_transaction``: it
        forgets the transaction's partitions, so the abort that follows would send no EndTxn, leaving the
        transaction open on the broker, and the next commit of this producer would commit its records."""
        txn_manager = self._sender._txn_manager
        membership = getattr(txn_manager, MEMBERSHIP_ATTR, None) or (-1, "")
        txn_manager._transition_to(TransactionState.ABORTABLE_ERROR)
        _group, _offsets, future = txn_manager._pending_txn_offsets.popleft()
        future.set_exception(StaleMembership(self._group_id, membership[0], membership[1], code))


def install_group_fencing() -> None:
    """Make aiokafka's sender commit a transaction's offsets with TxnOffsetCommit v3 when the producer was
    given a group membership. Idempotent; raises if aiokafka no longer has the names (an unchecked upgrade)."""
    current = getattr(_sender, OFFSET_HANDLER_NAME, None)
    if current is _FencedOffsetCommitHandler:
        return
    if current is None or not hasattr(current, "create_request") or not hasattr(current, "handle_response"):
        raise RuntimeError(f"aiokafka {aiokafka.__version__} has no {_sender.__name__}.{OFFSET_HANDLER_NAME} "
                           f"(checked against {AIOKAFKA_VERSION}); review app/kafka_internals.py before upgrading")
    setattr(_sender, OFFSET_HANDLER_NAME, _FencedOffsetCommitHandler)


async def send_offsets_fenced(producer: AIOKafkaProducer, offsets: dict[TopicPartition, int], group_id: str,
                              generation: int, member_id: str, after: Awaitable[Any] | None = None) -> None:
    """``producer.send_offsets_to_transaction``, checked by the group coordinator against the group's
    current generation and member id: raises :class:`StaleMembership` when they are not current.

    ``after``: the TxnOffsetCommit (the check) is sent only once it is done (it must not raise); the
    AddOffsetsToTxn before it goes out at once, beside the transaction's produce requests."""
    install_group_fencing()
    setattr(producer._txn_manager, MEMBERSHIP_ATTR, (generation, member_id))
    setattr(producer._txn_manager, GATE_ATTR, None if after is None else asyncio.ensure_future(after))
    await producer.send_offsets_to_transaction(offsets, group_id)


def needs_abort(producer: AIOKafkaProducer) -> bool:
    """Whether the producer has a transaction open or failed, which ``abort_transaction`` ends (aiokafka has
    no public query)."""
    state = producer._txn_manager.state
    return bool(state in (TransactionState.IN_TRANSACTION, TransactionState.ABORTABLE_ERROR))


def is_fatal(producer: AIOKafkaProducer) -> bool:
    """Whether the producer's transactions failed for good (its epoch was taken: a new owner fenced it);
    aiokafka then refuses even ``begin_transaction`` (an AssertionError), so it must be replaced."""
    return bool(producer._txn_manager.state == TransactionState.FATAL_ERROR)


def retrieve_failure(producer: AIOKafkaProducer) -> None:
    """Mark a failed producer's transaction error as seen. aiokafka also sets the error it raised on an
    internal future nobody awaits once the producer is dropped, which asyncio would log with a traceback."""
    waiter = producer._txn_manager._transaction_waiter
    if waiter is not None and waiter.done() and not waiter.cancelled():
        waiter.exception()


def group_membership(consumer: Any) -> tuple[int, str] | None:
    """(generation, member id) of an aiokafka consumer's group membership (or of Faust's consumer, which
    runs one in its thread), or None while it has none (starting, or between a lost membership and the
    next join)."""
    inner = consumer if hasattr(consumer, "_coordinator") else getattr(getattr(consumer, "_thread", None),
                                                                       "_consumer", None)
    coordinator = getattr(inner, "_coordinator", None)
    if coordinator is None:
        return None
    generation, member_id = coordinator.generation, coordinator.member_id
    if generation is None or generation < 0 or not member_id:
        return None
    return int(generation), str(member_id)


# -- Empty control batches (KAFKA-7467) ----------------------------------------------------------------------

#: the private name: the method of aiokafka's PartitionRecords that reads a control batch's marker
ABORT_MARKER_NAME = "_contains_abort_marker"
_original_abort_marker = getattr(_fetcher.PartitionRecords, ABORT_MARKER_NAME, None)


def _abort_marker_or_cleaned(self: Any, batch: Any) -> bool:
    """An empty control batch is one the log cleaner emptied (a compacted changelog keeps the batch for its
    producer state): no marker, as Kafka's Java consumer reads it since KAFKA-7467. aiokafka raises
    instead, which crashed Faust's fetcher in the middle of the books changelog."""
    try:
        return bool(_original_abort_marker(self, batch))  # type: ignore[misc]
    except aiokafka.errors.KafkaError as exc:
        if "did not contain any records" in str(exc):
            return False
        raise


def tolerate_cleaned_control_batches() -> None:
    """Make aiokafka's read_committed consumers skip an empty control batch instead of failing. Idempotent;
    raises if aiokafka no longer has the method (an unchecked upgrade)."""
    if _original_abort_marker is None:
        raise RuntimeError(f"aiokafka {aiokafka.__version__} has no PartitionRecords.{ABORT_MARKER_NAME} (checked "
                           f"against {AIOKAFKA_VERSION}); review app/kafka_internals.py before upgrading aiokafka")
    setattr(_fetcher.PartitionRecords, ABORT_MARKER_NAME, _abort_marker_or_cleaned)


# -- The fetch wait: long while every wanted partition is in the fetch ---------------------------------------

#: the private names: the fetcher method that builds each node's fetch request, and the wait it reads
ACTIONS_NAME = "_get_actions_per_node"
FETCH_WAIT_ATTR = "_fetch_max_wait_ms"
#: the attribute that turns the long wait on for one fetcher: (the long wait in ms, which partitions the
#: consumer takes records of)
IDLE_WAIT_ATTR = "krakenflow_idle_wait"
_original_actions = getattr(_fetcher.Fetcher, ACTIONS_NAME, None)

#: tp -> whether the consumer takes that partition's records now
Wanted = Callable[[TopicPartition], bool]


def _every_wanted_partition_fetchable(fetcher: Any, assignment: Any, wanted: Wanted) -> bool:
    """The next fetch leaves out no partition whose records the consumer wants: none is paused or waiting
    for an offset reset, and the only partitions with records not taken yet are ones it does not take (a
    Faust worker leaves its table changelogs' records in the fetcher once their recovery is done)."""
    records = fetcher._records
    for tp in assignment.tps:
        state = assignment.state_value(tp)
        if state.paused or not state.has_valid_position or (tp in records and wanted(tp)):
            return False
    return True


def _actions_per_node(self: Any, assignment: Any) -> Any:
    idle = getattr(self, IDLE_WAIT_ATTR, None)
    if idle is None or not _every_wanted_partition_fetchable(self, assignment, idle[1]):
        return _original_actions(self, assignment)  # type: ignore[misc]
    short_wait = getattr(self, FETCH_WAIT_ATTR)
    setattr(self, FETCH_WAIT_ATTR, idle[0])
    try:
        return _original_actions(self, assignment)  # type: ignore[misc]
    finally:
        setattr(self, FETCH_WAIT_ATTR, short_wait)


def long_idle_fetch_wait(consumer: Any, idle_wait_ms: int, wanted: Wanted = lambda tp: True) -> None:
    """Let a started aiokafka consumer's fetches wait ``idle_wait_ms`` when they leave out no partition it
    ``wanted``.

    The broker answers a fetch as soon as one of its partitions has a record, so such a fetch adds no
    latency however long it may wait. A fetch that leaves out a wanted partition (its records not taken
    yet, or paused) keeps the consumer's short wait: the broker would hold it while that partition gets
    records. With the short wait always, an idle worker fetched ~90 times a second (10 ms), ~3 % of a core
    in the consumer thread alone. Idempotent; raises if aiokafka no longer has the names."""
    if _original_actions is None or not hasattr(consumer._fetcher, FETCH_WAIT_ATTR):
        raise RuntimeError(f"aiokafka {aiokafka.__version__} has no Fetcher.{ACTIONS_NAME} or {FETCH_WAIT_ATTR} "
                           f"(checked against {AIOKAFKA_VERSION}); review app/kafka_internals.py before upgrading")
    setattr(_fetcher.Fetcher, ACTIONS_NAME, _actions_per_node)
    setattr(consumer._fetcher, IDLE_WAIT_ATTR, (idle_wait_ms, wanted))


# -- Who holds a transaction open on a partition (KIP-664: DescribeProducers, ListTransactions) --------------
# aiokafka has neither request. A new owner that finds a transaction open on a changelog partition it takes
# over, and no committed record naming its holder (a former owner paused inside its first transaction of an
# assignment), asks the partition's leader which producer holds it and the brokers which transactional id
# that producer is, and fences the id: otherwise the takeover waits out the transaction's timeout.


class DescribeProducersResponse_v0(Response):
    API_KEY = 61
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partitions", CompactArray(
                ("partition_index", Int32), ("error_code", Int16), ("error_message", CompactString("utf-8")),
                ("active_producers", CompactArray(
                    ("producer_id", Int64), ("producer_epoch", Int32), ("last_sequence", Int32),
                    ("last_timestamp", Int64), ("coordinator_epoch", Int32), ("current_txn_start_offset", Int64),
                    ("tags", TaggedFields))),
                ("tags", TaggedFields))),
            ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class DescribeProducersRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 61
    API_VERSION = 0
    RESPONSE_TYPE = DescribeProducersResponse_v0
    SCHEMA = Schema(
        ("topics", CompactArray(("name", CompactString("utf-8")), ("partition_indexes", CompactArray(Int32)),
                                ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class DescribeProducers(Request[DescribeProducersRequest_v0]):
    API_KEY = 61

    def __init__(self, topic: str, partition: int) -> None:
        self._topic, self._partition = topic, partition

    def build(self, request_struct_class: type[DescribeProducersRequest_v0]) -> DescribeProducersRequest_v0:
        return request_struct_class([(self._topic, [self._partition], {})], {})


class ListTransactionsResponse_v0(Response):
    API_KEY = 66
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("unknown_state_filters", CompactArray(CompactString("utf-8"))),
        ("transaction_states", CompactArray(
            ("transactional_id", CompactString("utf-8")), ("producer_id", Int64),
            ("transaction_state", CompactString("utf-8")), ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class ListTransactionsRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 66
    API_VERSION = 0
    RESPONSE_TYPE = ListTransactionsResponse_v0
    SCHEMA = Schema(
        ("state_filters", CompactArray(CompactString("utf-8"))),
        ("producer_id_filters", CompactArray(Int64)),
        ("tags", TaggedFields),
    )


class ListTransactions(Request[ListTransactionsRequest_v0]):
    API_KEY = 66

    def __init__(self, producer_ids: list[int]) -> None:
        self._producer_ids = producer_ids

    def build(self, request_struct_class: type[ListTransactionsRequest_v0]) -> ListTransactionsRequest_v0:
        return request_struct_class([], self._producer_ids, {})


async def open_transaction_ids(bootstrap: str, config: Mapping[str, Any], topic: str, partition: int) -> list[str]:
    """The transactional ids of the producers holding a transaction open on ``topic``/``partition`` now
    (empty if none, or if the broker predates KIP-664: Kafka 2.8). Raises ``KafkaError`` on a broker error."""
    accepted = inspect.signature(AIOKafkaClient).parameters  # a producer's settings hold more (acks, ...)
    client = AIOKafkaClient(bootstrap_servers=bootstrap, client_id="krakenflow-takeover",
                            **{k: v for k, v in config.items() if k in accepted and k != "client_id"})
    await client.bootstrap()
    try:
        client.add_topic(topic)
        await client.force_metadata_update()
        leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
        if leader is None or leader < 0:
            raise aiokafka.errors.LeaderNotAvailableError(f"{topic}/{partition} has no leader")
        try:
            described = await client.send(leader, DescribeProducers(topic, partition))
        except aiokafka.errors.IncompatibleBrokerVersion:
            return []
        producers = [p[0] for t in described.topics for part in t[1] if part[1] == 0
                     for p in part[3] if p[5] >= 0]  # current_txn_start_offset: -1 when none is open
        errors = [part[1] for t in described.topics for part in t[1] if part[1] != 0]
        if errors:
            raise aiokafka.errors.for_code(errors[0])(f"DescribeProducers {topic}/{partition}")
        if not producers:
            return []
        ids: set[str] = set()
        # each broker lists the transactions whose coordinator it is
        for broker in sorted(b.nodeId for b in client.cluster.brokers()):
            listed = await client.send(broker, ListTransactions(producers))
            if listed.error_code:
                raise aiokafka.errors.for_code(listed.error_code)(f"ListTransactions on broker {broker}")
            ids.update(state[0] for state in listed.transaction_states)
        return sorted(ids)
    finally:
        await client.close()


# -- zstd compression with a reused context ------------------------------------------------------------------

#: the private names: the module globals through which aiokafka's record batch builders and readers (the C
#: ones the clients use, and the pure-Python ones) compress and decompress a zstd batch
ZSTD_ENCODE_NAME = "zstd_encode"
ZSTD_DECODE_NAME = "zstd_decode"
ZSTD_MODULES = (_codec, _c_records, _py_records)
#: Kafka's default zstd level (KIP-390), as aiokafka's own encoder
ZSTD_LEVEL = 3

_cramjam_zstd_decode = _codec.zstd_decode  # aiokafka's own, for the frames the reused context does not take
_zstd = threading.local()  # a compressor context is not thread-safe (Faust's consumer has its own thread)


def _zstd_encode(payload: Any, level: int | None = None) -> bytes:
    """aiokafka's ``zstd_encode`` on a per-thread compressor. aiokafka's (cramjam's ``zstd.compress``)
    builds a new context per batch: ~60 us whatever the size, 7 % of the worker's samples at 1k frames/s
    (one batch per topic partition per commit); a reused context takes ~3 us for a commit's batch."""
    if level is not None and level != ZSTD_LEVEL:  # no aiokafka 0.14 builder passes one
        return zstandard.ZstdCompressor(level=level).compress(payload)
    compressor: zstandard.ZstdCompressor | None = getattr(_zstd, "compressor", None)
    if compressor is None:
        compressor = _zstd.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return compressor.compress(payload)  # any buffer: no copy


#: the largest batch the reused context decodes: it allocates what a frame's header says it holds, so a
#: larger (or forged) size goes to aiokafka's decoder, which refuses a frame it cannot decode in bounded memory
ZSTD_REUSED_MAX_SIZE = 64 << 20


def _zstd_decode(payload: Any) -> bytes:
    """aiokafka's ``zstd_decode`` on a per-thread decompressor (~3 us a fetched batch, ~14 us with a new
    context each). One frame that states a size up to :data:`ZSTD_REUSED_MAX_SIZE`, as every zstd producer
    here writes; anything else (no size, a larger one, several frames, a bad header) goes to aiokafka's own
    decoder."""
    decompressor: zstandard.ZstdDecompressor | None = getattr(_zstd, "decompressor", None)
    if decompressor is None:
        decompressor = _zstd.decompressor = zstandard.ZstdDecompressor()
    try:
        if 0 <= zstandard.frame_content_size(payload) <= ZSTD_REUSED_MAX_SIZE:  # -1: not stated
            return decompressor.decompress(payload, allow_extra_data=False)
    except zstandard.ZstdError:
        pass
    return _cramjam_zstd_decode(payload)


def reuse_zstd_contexts() -> None:
    """Make every aiokafka client of the process compress and decompress zstd batches with a reused context
    (the same format: one zstd frame per batch, at Kafka's default level). Idempotent; raises if aiokafka no
    longer has the names (an unchecked upgrade)."""
    for module in ZSTD_MODULES:
        if not (hasattr(module, ZSTD_ENCODE_NAME) and hasattr(module, ZSTD_DECODE_NAME)):
            raise RuntimeError(f"aiokafka {aiokafka.__version__} has no {module.__name__}.{ZSTD_ENCODE_NAME} or "
                               f"{ZSTD_DECODE_NAME} "
                               f"(checked against {AIOKAFKA_VERSION}); review app/kafka_internals.py before "
                               f"upgrading aiokafka")
        setattr(module, ZSTD_ENCODE_NAME, _zstd_encode)
        setattr(module, ZSTD_DECODE_NAME, _zstd_decode)

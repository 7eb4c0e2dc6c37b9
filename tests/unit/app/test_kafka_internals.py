"""The aiokafka private name ``app/kafka_internals.py`` relies on is still there and still used as it
was: this fails loudly on an aiokafka upgrade that moves it (the back-off would silently be 20 ms again)."""

from __future__ import annotations

import dis
import importlib.metadata
import tomllib
from pathlib import Path

import aiokafka.producer.message_accumulator as message_accumulator
import aiokafka.producer.sender as sender
import cramjam
import pytest
import zstandard
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.record.memory_records import MemoryRecords

from app import kafka_internals

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


def test_the_installed_aiokafka_is_the_checked_and_pinned_one() -> None:
    installed = importlib.metadata.version("aiokafka")
    assert installed == kafka_internals.AIOKAFKA_VERSION, "review app/kafka_internals.py for this aiokafka"
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"aiokafka=={kafka_internals.AIOKAFKA_VERSION}" in dependencies


def test_the_concurrent_transactions_back_off_is_the_module_global_aiokafka_returns() -> None:
    assert isinstance(getattr(sender, kafka_internals.BACKOFF_NAME), float)
    # the handler reads the global on every retry (a copy made at import would ignore the change)
    loads = {i.argval for i in dis.get_instructions(sender.AddPartitionsToTxnHandler.handle_response)
             if i.opname == "LOAD_GLOBAL"}
    assert kafka_internals.BACKOFF_NAME in loads


def test_shortening_sets_it_and_a_missing_name_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sender, kafka_internals.BACKOFF_NAME, 0.02)
    kafka_internals.shorten_transaction_backoff()
    assert getattr(sender, kafka_internals.BACKOFF_NAME) == kafka_internals.TRANSACTION_BACKOFF
    monkeypatch.delattr(sender, kafka_internals.BACKOFF_NAME)
    with pytest.raises(RuntimeError, match="review app/kafka_internals.py"):
        kafka_internals.shorten_transaction_backoff()



def test_the_offset_commit_handler_is_the_module_global_the_sender_looks_up() -> None:
    loads = {i.argval for i in dis.get_instructions(sender.Sender._do_txn_offset_commit) if i.opname == "LOAD_GLOBAL"}
    assert kafka_internals.OFFSET_HANDLER_NAME in loads
    handler = getattr(sender, kafka_internals.OFFSET_HANDLER_NAME)
    assert {"create_request", "handle_response"} <= set(vars(handler)) | set(vars(sender.TxnOffsetCommitHandler))
    kafka_internals.install_group_fencing()
    assert getattr(sender, kafka_internals.OFFSET_HANDLER_NAME).__name__ == "_FencedOffsetCommitHandler"


async def test_the_transaction_manager_names_the_refusal_relies_on_are_there() -> None:
    from aiokafka.producer.transaction_manager import TransactionManager, TransactionState

    manager = TransactionManager("kf-check", 10_000)
    assert hasattr(manager, "_pending_txn_offsets") and callable(manager._transition_to)
    assert hasattr(manager, "_transaction_waiter")  # retrieve_failure reads its error
    assert {"IN_TRANSACTION", "ABORTABLE_ERROR", "FATAL_ERROR"} <= {s.name for s in TransactionState}
    assert manager.state == TransactionState.UNINITIALIZED  # needs_abort and is_fatal read it
    # error_transaction forgets the partitions (so an abort after it sends no EndTxn): why _refuse exists
    names = TransactionManager.error_transaction.__code__.co_names
    assert "_txn_partitions" in names and "clear" in names


def test_a_consumers_membership_is_read_from_its_coordinator() -> None:
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from faust.transport.consumer import ThreadDelegateConsumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    source = GroupCoordinator.__init__.__code__.co_names
    assert "generation" in source and "member_id" in source
    # Faust's consumer runs aiokafka's in a thread: ThreadDelegateConsumer._thread._consumer
    assert "_thread" in ThreadDelegateConsumer.__annotations__
    assert "_consumer" in AIOKafkaConsumerThread.__annotations__

    class Coordinator:
        generation, member_id = 3, "m-1"

    class Consumer:
        _coordinator = Coordinator()

    class FaustThread:
        _consumer = Consumer()

    class FaustConsumer:
        _thread = FaustThread()

    assert kafka_internals.group_membership(Consumer()) == (3, "m-1")
    assert kafka_internals.group_membership(FaustConsumer()) == (3, "m-1")
    Coordinator.generation = -1
    assert kafka_internals.group_membership(Consumer()) is None


def test_an_empty_control_batch_reads_as_no_marker_where_aiokafka_raised() -> None:
    from aiokafka.consumer.fetcher import PartitionRecords
    from aiokafka.errors import KafkaError

    assert kafka_internals._original_abort_marker is not None, "aiokafka moved PartitionRecords._contains_abort_marker"

    class Cleaned:  # a control batch the cleaner emptied: no records
        def __next__(self) -> object:
            raise StopIteration

    with pytest.raises(KafkaError, match="did not contain any records"):
        kafka_internals._original_abort_marker(None, Cleaned())  # aiokafka's own answer
    kafka_internals.tolerate_cleaned_control_batches()
    assert getattr(PartitionRecords, kafka_internals.ABORT_MARKER_NAME)(None, Cleaned()) is False


def test_the_fetcher_names_the_long_idle_wait_relies_on_are_there() -> None:
    import aiokafka.consumer.fetcher as fetcher
    from aiokafka.consumer.subscription_state import Assignment, TopicPartitionState
    from faust.transport.consumer import Consumer
    from faust.types import TP

    actions = getattr(fetcher.Fetcher, kafka_internals.ACTIONS_NAME)
    assert kafka_internals._original_actions is not None
    # the request's wait is read from the attribute at each call (so setting it around the call works)
    reads = {i.argval for i in dis.get_instructions(kafka_internals._original_actions) if i.opname in ("LOAD_ATTR", "LOAD_METHOD")}
    assert {kafka_internals.FETCH_WAIT_ATTR, "_records", "tps", "state_value"} <= reads
    assert {"paused", "has_valid_position"} <= set(dir(TopicPartitionState))
    assert {"tps", "state_value"} <= set(dir(Assignment))
    assert actions in (kafka_internals._original_actions, kafka_internals._actions_per_node)
    # Faust's partitions taken (the profile's ``wanted``), whose TPs compare equal to aiokafka's
    assert "_active_partitions" in Consumer.__annotations__
    assert fetcher.TopicPartition("t", 1) in {TP("t", 1)}


def test_the_client_names_the_open_transaction_lookup_relies_on_are_there() -> None:
    import inspect

    from aiokafka.client import AIOKafkaClient
    from aiokafka.cluster import ClusterMetadata

    assert {"bootstrap", "add_topic", "force_metadata_update", "send", "close"} <= set(dir(AIOKafkaClient))
    assert {"leader_for_partition", "brokers"} <= set(dir(ClusterMetadata))
    assert {"security_protocol", "ssl_context", "sasl_mechanism"} <= set(inspect.signature(AIOKafkaClient).parameters)
    # the requests are built for a broker's versions (KIP-664 APIs: 61, 66), as aiokafka builds its own
    request = kafka_internals.DescribeProducers("t", 3).prepare({61: (0, 0)})
    assert request.encode() == kafka_internals.DescribeProducersRequest_v0([("t", [3], {})], {}).encode()
    assert kafka_internals.ListTransactions([7]).prepare({66: (0, 1)}).API_VERSION == 0


def _zstd_batch(records: list[bytes]) -> bytes:
    """A zstd record batch built by the builder aiokafka's producer uses (the C one when it is built)."""
    builder = message_accumulator.DefaultRecordBatchBuilder(
        magic=2, compression_type=DefaultRecordBatch.CODEC_ZSTD, is_transactional=0, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for offset, value in enumerate(records):
        builder.append(offset, timestamp=None, key=b"BTC/USD", value=value, headers=[])
    return bytes(builder.build())


def test_the_producers_batch_builder_compresses_zstd_through_the_reused_context(
        monkeypatch: pytest.MonkeyPatch) -> None:
    kafka_internals.reuse_zstd_contexts()
    for module in kafka_internals.ZSTD_MODULES:
        assert getattr(module, kafka_internals.ZSTD_ENCODE_NAME) is kafka_internals._zstd_encode
    # the builder looks the global up per batch (a copy bound at import would keep cramjam's encoder)
    calls: list[int] = []

    def counting(payload: bytes, level: int | None = None) -> bytes:
        calls.append(len(payload))
        return kafka_internals._zstd_encode(payload, level)

    for module in kafka_internals.ZSTD_MODULES:
        monkeypatch.setattr(module, kafka_internals.ZSTD_ENCODE_NAME, counting)
    values = [b'{"price":"62803.8","qty":"0.95536416"}' * 3 for _ in range(20)]
    batch = _zstd_batch(values)
    assert calls, "aiokafka's batch builder no longer compresses through the module global"
    # the same format: aiokafka's own decoder (cramjam) reads every record back
    read = MemoryRecords(batch).next_batch()
    assert read.compression_type == DefaultRecordBatch.CODEC_ZSTD
    assert [record.value for record in read] == values


def test_reusing_zstd_contexts_fails_loudly_when_the_name_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(kafka_internals.ZSTD_MODULES[1], kafka_internals.ZSTD_ENCODE_NAME)
    with pytest.raises(RuntimeError, match="review app/kafka_internals.py"):
        kafka_internals.reuse_zstd_contexts()


def test_the_consumers_batch_reader_decompresses_zstd_through_the_reused_context(
        monkeypatch: pytest.MonkeyPatch) -> None:
    kafka_internals.reuse_zstd_contexts()
    values = [b'{"channel":"book","type":"update","data":[]}' * 4 for _ in range(15)]
    batch = _zstd_batch(values)
    calls: list[int] = []

    def counting(payload: bytes) -> bytes:
        calls.append(len(payload))
        return kafka_internals._zstd_decode(payload)

    for module in kafka_internals.ZSTD_MODULES:
        assert getattr(module, kafka_internals.ZSTD_DECODE_NAME) is kafka_internals._zstd_decode
        monkeypatch.setattr(module, kafka_internals.ZSTD_DECODE_NAME, counting)
    assert [record.value for record in MemoryRecords(batch).next_batch()] == values
    assert calls, "aiokafka's batch reader no longer decompresses through the module global"


def test_zstd_frames_the_reused_context_does_not_take_are_decoded_as_aiokafka_does() -> None:
    payload = b'{"price":"62803.8","qty":"0.95536416"}' * 20
    one = zstandard.ZstdCompressor(level=3).compress(payload)
    unsized = zstandard.ZstdCompressor(level=3, write_content_size=False).compress(payload)
    assert kafka_internals._zstd_decode(one) == payload
    assert kafka_internals._zstd_decode(unsized) == payload  # no size in its header
    assert kafka_internals._zstd_decode(one + unsized) == payload * 2  # two frames: none of them dropped


def test_a_zstd_frame_with_a_forged_size_is_refused_as_aiokafka_refuses_it_not_allocated() -> None:
    frame = zstandard.ZstdCompressor(level=3).compress(b"x" * 100)  # its header: a one-byte content size
    forged = frame[:4] + bytes([0xE0]) + (1 << 45).to_bytes(8, "little") + frame[6:]  # says 32 TiB
    assert zstandard.frame_content_size(forged) == 1 << 45
    with pytest.raises(cramjam.DecompressionError):  # not a MemoryError from allocating what it says
        kafka_internals._zstd_decode(forged)

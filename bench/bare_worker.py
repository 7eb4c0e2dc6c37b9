"""The worker's hop with nothing but aiokafka: the floor under the book worker's latency and CPU.

It does what the book worker's Kafka side does, and nothing else: a consumer in a group reads
``--source`` (``read_committed``, the worker's fetch wait); every record read is copied, unchanged, to
the same partition of ``--sink`` through a group commit (one commit in flight; what arrives meanwhile
joins the next one) with the worker's writer settings.

* ``--exactly-once``: each commit is a transaction (aiokafka's back-off shortened as in the worker) that
  also commits the consumer's offsets in it once its records are acked (``send_offsets_to_transaction``:
  the same AddOffsetsToTxn + TxnOffsetCommit pair the worker's group fence sends, at the same point).
* at least once: the records are sent acks=all, then the offsets are committed.
* ``--state T``: each commit also writes, for each partition it covers, the consumed offset to the same
  partition of ``T``, as the book worker writes its watermark to the books changelog: the floor of a
  worker whose state commits with its outputs.

No Faust, no books, no tables: what it costs is what the clients and the broker cost per cycle.
``bench/floors.py`` runs it as a process of its own, so its CPU can be read beside the worker's.

    python bench/bare_worker.py --bootstrap host:port --source T --sink T2 --group G [--exactly-once]

It starts at the end of ``--source`` (in the pipeline bench, ``kraken.raw`` already holds the book
worker's run: copying that first held a 10k frames/s floor back for minutes), prints ``ready`` once it
holds its partitions and their positions, copies what arrives after that, and runs until it is terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402

from app.kafka_internals import long_idle_fetch_wait, shorten_transaction_backoff  # noqa: E402
from app.kafka_writer import BatchWriter  # noqa: E402
from app.profile import APACHE_KAFKA_FETCH_MAX_WAIT_MS, IDLE_FETCH_WAIT_MS  # noqa: E402
from app.settings import Settings  # noqa: E402


def command(bootstrap: str, source: str, sink: str, exactly_once: bool, state: str | None = None) -> list[str]:
    """The command line that runs this bare worker (in a consumer group of its own)."""
    return [sys.executable, str(Path(__file__).resolve()), "--bootstrap", bootstrap, "--source", source, "--sink", sink,
            "--group", f"bare-{uuid.uuid4().hex[:8]}"] + (["--exactly-once"] if exactly_once else []) + (
            ["--state", state] if state else [])


async def run(args: argparse.Namespace) -> None:
    settings = Settings(broker=f"kafka://{args.bootstrap}")
    consumer = AIOKafkaConsumer(args.source, bootstrap_servers=args.bootstrap, group_id=args.group,
                                enable_auto_commit=False, auto_offset_reset="latest",
                                fetch_max_wait_ms=APACHE_KAFKA_FETCH_MAX_WAIT_MS, isolation_level="read_committed")
    template = BatchWriter(args.bootstrap, "bare-worker", settings.profile.writer_config())
    if args.exactly_once:
        shorten_transaction_backoff()
        producer = template.new_producer(transactional_id=f"bare-{uuid.uuid4().hex[:8]}")
    else:
        producer = template.new_producer()
    await producer.start()
    await consumer.start()
    long_idle_fetch_wait(consumer, IDLE_FETCH_WAIT_MS)  # the worker's consumer does the same
    writer = BatchWriter(args.bootstrap, "bare-worker", template.config, producer=producer)
    pending: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
    offsets: dict[TopicPartition, int] = {}
    arrived = asyncio.Event()

    async def committer() -> None:
        while True:
            if not pending:
                arrived.clear()
                await arrived.wait()
                continue
            batch, done = dict(pending), dict(offsets)
            pending.clear()
            if args.exactly_once:
                await producer.begin_transaction()
            futures = []
            for partition, records in batch.items():
                futures.extend(await writer.send_partition(args.sink, partition, records))
                if args.state:  # the consumed offset, as the book worker's watermark, in the same commit
                    watermark = str(done[TopicPartition(args.source, partition)]).encode()
                    futures.extend(await writer.send_partition(args.state, partition, [(b"watermark", watermark)]))
            await asyncio.gather(*futures)
            if args.exactly_once:
                # after the records, as the worker's fence: sent while the previous transaction's markers
                # are still being written, AddOffsetsToTxn is refused and aiokafka waits 100 ms
                await producer.send_offsets_to_transaction(done, args.group)
                await producer.commit_transaction()
            else:
                await consumer.commit(done)

    committing = asyncio.ensure_future(committer())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    ready = False
    try:
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=200)
            if not ready and consumer.assignment():
                for tp in consumer.assignment():  # resolved now: what arrives after "ready" is copied
                    await consumer.position(tp)
                print("ready", flush=True)
                ready = True
            for tp, messages in fetched.items():
                pending.setdefault(tp.partition, []).extend((m.key, m.value) for m in messages)
                offsets[tp] = messages[-1].offset + 1
            if fetched:
                arrived.set()
            if committing.done():
                committing.result()  # a failed commit ends the floor loudly
    finally:
        committing.cancel()
        await consumer.stop()
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--exactly-once", action="store_true")
    parser.add_argument("--state", help="a topic with --source's partitions: each commit also writes each of its "
                                         "partitions' consumed offset there (the book worker's watermark)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

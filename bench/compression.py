"""Compression of ``kraken.raw`` and ``kraken.book.deltas`` record batches: none, lz4, zstd, gzip, snappy.

Builds the record batches with aiokafka's own batch builder (what the producer sends and the broker
stores: Kafka keeps produced batches as they are), from simulator frames (20 pairs, depth 25) and the
processor's deltas of them, in batches of 200 records as the book agent and a lingering ingest send.
Prints bytes per record, the ratio to uncompressed and the CPU microseconds per record to compress.

    python bench/compression.py [--frames 20000]

Last line: ``RESULT raw_lz4_ratio=.. raw_zstd_ratio=.. deltas_lz4_ratio=.. deltas_zstd_ratio=.. lz4_us=.. zstd_us=..``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka.record.default_records import DefaultRecordBatchBuilder  # noqa: E402

from bench.harness import Market  # noqa: E402
from models.kraken.wire import frame_key  # noqa: E402
from models.processor import BookProcessor, Output, ProcessorSettings  # noqa: E402
from models.records import encode  # noqa: E402
from models.session import RawRecord  # noqa: E402

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
BATCH = 200


def batches_bytes(records: list[tuple[bytes, bytes]], codec: int) -> tuple[int, float]:
    """(total bytes of the built batches, CPU seconds spent building them)."""
    total, cpu = 0, 0.0
    for start in range(0, len(records), BATCH):
        builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False,
                                            producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                            batch_size=1 << 22)
        for offset, (key, value) in enumerate(records[start:start + BATCH]):
            builder.append(offset, timestamp=None, key=key, value=value, headers=[])
        t = time.process_time()
        total += len(builder.build())
        cpu += time.process_time() - t
    return total, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20000)
    args = parser.parse_args()
    market = Market(20, 25, 11)
    start, updates = market.start(), market.updates(args.frames)
    raw = start + updates
    processor, out = BookProcessor(ProcessorSettings()), []  # type: ignore[var-annotated]
    for offset, (_, value) in enumerate(raw):
        key = frame_key(value.decode())
        processor.process_into(RawRecord(value, key.encode() if key else None, 0, offset, 1), out)
    deltas = [(o.key.encode(), encode(o.record)) for o in out if isinstance(o, Output) and o.topic == "book.deltas"]
    results: dict[tuple[str, str], tuple[float, float]] = {}
    for name, records in (("raw", raw), ("deltas", deltas)):
        plain, _ = batches_bytes(records, 0)
        for codec, code in CODECS.items():
            size, cpu = batches_bytes(records, code)
            results[(name, codec)] = (plain / size, cpu / len(records) * 1e6)
            print(f"{name:<7} {codec:<7} {size / len(records):8.1f} B/record  ratio {plain / size:5.2f}  "
                  f"{cpu / len(records) * 1e6:6.2f} us/record to compress")
    lz4 = (results[("raw", "lz4")][1] + results[("deltas", "lz4")][1]) / 2
    zstd = (results[("raw", "zstd")][1] + results[("deltas", "zstd")][1]) / 2
    print(f"RESULT raw_lz4_ratio={results[('raw', 'lz4')][0]:.2f} raw_zstd_ratio={results[('raw', 'zstd')][0]:.2f} "
          f"deltas_lz4_ratio={results[('deltas', 'lz4')][0]:.2f} deltas_zstd_ratio={results[('deltas', 'zstd')][0]:.2f} "
          f"lz4_us={lz4:.2f} zstd_us={zstd:.2f}")


if __name__ == "__main__":
    main()

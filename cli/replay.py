"""``krakenflow replay CAPTURE...``: publish capture frames into ``kraken.raw`` exactly as the ingest.

Same keys (pair, or ``conn:<id>`` for connection frames), same headers (``recv_ns`` = publish time,
``conn_id`` = ``replay:<file>``, per-file ``seq``), so recorded sessions are reprocessed by the same
agents. ``rate`` limits frames per second (0: as fast as the broker takes them).

Instrument frames are connection-level, so they reach a different partition (and maybe worker) than
the books they describe. Recorders that re-serialised numbers (``0.8`` for ``0.80000000``) can only be
verified with the instrument precision, so replay stamps every pair frame with its pair's precision from
the captures' instrument frames (the ``prec`` header, as the ingest does).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from app.kafka_internals import reuse_zstd_contexts
from app.security import kafka_client_config
from app.settings import Settings
from app.topics import ensure_topics
from ingest.raw import PrecisionStamps, raw_record
from models.kraken.wire import frame_key


async def replay(settings: Settings, paths: list[Path], rate: float = 0.0) -> int:
    """Publish every non-empty line of each capture; returns the number of frames published."""
    captures = []
    for path in paths:
        try:
            captures.append((path, path.read_text().splitlines()))
        except OSError as exc:
            raise SystemExit(f"cannot read {path}: {exc.strerror}; give capture files (JSON Lines)") from exc
    await ensure_topics(settings)
    reuse_zstd_contexts()
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, linger_ms=5, **settings.profile.producer_config(),
        **kafka_client_config(settings),
    )
    await producer.start()
    sent = 0
    started = time.monotonic()
    try:
        # every capture's instrument precisions, stamped on each pair frame as the ingest stamps them: a
        # worker formats a book by its frames alone, whatever partition the instrument frames reach
        stamps = PrecisionStamps()
        for _, lines in captures:
            for line in lines:
                if line.startswith('{"channel":"instrument"'):
                    stamps.stamp(line, None)
        futures = []
        for path, lines in captures:
            connection = f"replay:{path.name}"
            seq = 0
            for line in lines:
                if not line.strip():
                    continue
                pair = frame_key(line)
                key, value, headers = raw_record(line, time.time_ns(), connection, seq, pair,
                                                 stamp=stamps.stamp(line, pair))
                futures.append(await producer.send(settings.raw_topic, value, key=key, headers=headers))
                seq += 1
                sent += 1
                if rate > 0:
                    ahead = sent / rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)  # the requested publishing rate
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


log = logging.getLogger("krakenflow.replay")



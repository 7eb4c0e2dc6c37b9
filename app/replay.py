"""``krakenflow replay CAPTURE...``: publish capture frames into ``kraken.raw`` exactly as the ingest.

Same keys (pair, or ``conn:<id>`` for connection frames), same headers (``recv_ns`` = publish time,
``conn_id`` = ``replay:<file>``, per-file ``seq``), so recorded sessions are reprocessed by the same
agents. ``rate`` limits frames per second (0: as fast as the broker takes them).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from app.ingest import raw_record
from app.kraken_client import frame_key
from app.settings import Settings
from app.topics import ensure_topics


async def replay(settings: Settings, paths: list[Path], rate: float = 0.0) -> int:
    """Publish every non-empty line of each capture; returns the number of frames published."""
    captures = []
    for path in paths:
        try:
            captures.append((path, path.read_text().splitlines()))
        except OSError as exc:
            raise SystemExit(f"cannot read {path}: {exc.strerror}; give capture files (JSON Lines)") from exc
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5,
        enable_idempotence=not settings.embedded_broker,
        max_batch_size=1 if settings.embedded_broker else 16384,
    )
    await producer.start()
    sent = 0
    started = time.monotonic()
    try:
        futures = []
        for path, lines in captures:
            connection = f"replay:{path.name}"
            seq = 0
            for line in lines:
                if not line.strip():
                    continue
                key, value, headers = raw_record(line, time.time_ns(), connection, seq, frame_key(line))
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

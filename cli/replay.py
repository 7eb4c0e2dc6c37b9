"""``krakenflow replay CAPTURE...``: publish capture frames into ``kraken.raw`` exactly as the ingest.

Same keys (pair, or ``conn:<id>`` for connection frames), same headers (``recv_ns`` = publish time,
``conn_id`` = ``replay:<file>``, per-file ``seq``), so recorded sessions are reprocessed by the same
agents. ``rate`` limits frames per second (0: as fast as the broker takes them).

Instrument frames are connection-level, so they reach a different partition (and maybe worker) than
the books they describe. Recorders that re-serialised numbers (``0.8`` for ``0.80000000``) can only be
verified with the instrument precision, so replay publishes the captures' instrument frames first and
waits until a worker has stored their precisions (the ``instruments`` table changelog), then the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from app.security import kafka_client_config
from app.settings import Settings
from app.topics import ensure_topics
from ingest.raw import raw_record
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
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, linger_ms=5, **settings.profile.producer_config(),
        **kafka_client_config(settings),
    )
    await producer.start()
    sent = 0
    started = time.monotonic()
    try:
        instruments = [(path, line) for path, lines in captures for line in lines
                       if line.startswith('{"channel":"instrument"')]
        if instruments:
            for path, line in instruments:
                key, value, headers = raw_record(line, time.time_ns(), f"replay:{path.name}", -1, None)
                await (await producer.send(settings.raw_topic, value, key=key, headers=headers))
            await _wait_for_precisions(settings, _symbols(line for _, line in instruments))
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


log = logging.getLogger("krakenflow.replay")


def _symbols(lines: Iterable[str]) -> set[str]:
    symbols: set[str] = set()
    for line in lines:
        try:
            symbols |= {p["symbol"] for p in orjson.loads(line)["data"]["pairs"]}
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue  # a malformed instrument frame: the workers dead-letter it
    return symbols


async def _wait_for_precisions(settings: Settings, symbols: set[str], timeout: float = 60.0) -> None:
    """Read the instruments table changelog until every symbol is in it (a worker processed them)."""
    topic = f"{settings.app_id}-instruments-changelog"
    # a subscription (no group) picks the topic up once a worker has created it
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", metadata_max_age_ms=1000, **kafka_client_config(settings))
    await consumer.start()
    seen: set[bytes] = set()
    wanted = {s.encode() for s in symbols}
    deadline = time.monotonic() + timeout
    try:
        while not wanted <= seen:
            if time.monotonic() > deadline:
                log.warning("no worker stored the precisions of %s within %.0f s; replaying anyway "
                            "(books whose numbers lost their trailing zeros may fail their checksum)",
                            sorted(s.decode() for s in wanted - seen), timeout)
                return
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                seen.update(m.key for m in batch if m.key)
    finally:
        await consumer.stop()

"""``krakenflow tail TOPIC``: follow an output topic in the terminal, one readable line per record."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from app.security import kafka_client_config
from app.settings import Settings
from app.topics import BY_SUFFIX
from models.symbols import normalize


class UnknownTopic(ValueError):
    """A topic krakenflow does not write; the message lists the ones it does."""


def topic_name(settings: Settings, topic: str) -> str:
    """``book.deltas`` or ``kraken.book.deltas`` -> the full topic name (one of the registry's)."""
    prefix = f"{settings.topic_prefix}."
    suffix = topic[len(prefix):] if topic.startswith(prefix) else topic
    if suffix not in BY_SUFFIX:
        raise UnknownTopic(f"{topic!r} is not a krakenflow topic; use one of {', '.join(sorted(BY_SUFFIX))}")
    return settings.topic(suffix)


def _levels(levels: list[list[str]], n: int = 3) -> str:
    text = " ".join(f"{p}x{q}" for p, q in levels[:n])
    return text + (f" (+{len(levels) - n})" if len(levels) > n else "")


def render(value: dict[str, Any]) -> str:
    """One line for the known record shapes, compact JSON otherwise."""
    symbol = value.get("symbol") or value.get("raw_key") or "-"
    if "is_snapshot" in value:  # a delta
        mark = "ok" if value.get("checksum_ok") else ("FAILED" if value.get("checksum_ok") is False else "-")
        kind = "SNAPSHOT" if value["is_snapshot"] else "update"
        return (f"{symbol:<10} seq {value['seq']:<7} epoch {value['epoch']:<3} {kind:<8} checksum {mark:<6} "
                f"bids {_levels(value['bids'])} | asks {_levels(value['asks'])}")
    if "state" in value and "previous" in value:  # a book event
        return f"{symbol:<10} {value['previous']} -> {value['state']}: {value.get('reason', '')}"
    if value.get("reason") in ("grid", "exchange") and "bids" in value:  # a snapshot
        return f"{symbol:<10} {value['reason']:<8} seq {value['seq']:<7} bids {_levels(value['bids'])} | asks {_levels(value['asks'])}"
    if "raw" in value and "reason" in value:  # a dead letter
        return f"{symbol:<10} DEAD LETTER at {value.get('raw_partition')}/{value.get('raw_offset')}: {value['reason']}"
    return f"{symbol:<10} " + orjson.dumps(value).decode()


def matches(value: dict[str, Any], symbol: str | None) -> bool:
    if symbol is None:
        return True
    wanted = normalize(symbol.replace("-", "/"))
    return wanted in (value.get("symbol"), normalize(str(value.get("raw_key", "")).replace("-", "/")))


async def tail(settings: Settings, topic: str, symbol: str | None = None, from_beginning: bool = False,
               count: int | None = None, write: Callable[[str], None] = print) -> int:
    """Print records until ``count`` were shown (forever without one); returns how many were shown."""
    name = topic_name(settings, topic)
    consumer = AIOKafkaConsumer(name, bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest" if from_beginning else "latest",
                                metadata_max_age_ms=1000, **kafka_client_config(settings),
                                # only what committed: the book agent writes in transactions on Apache Kafka
                                isolation_level="read_committed" if settings.profile.transactions else "read_uncommitted")
    await consumer.start()
    shown = 0
    try:
        while count is None or shown < count:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                for message in batch:
                    try:
                        value = orjson.loads(message.value or b"{}")
                    except orjson.JSONDecodeError:
                        value = {"raw": (message.value or b"")[:200].decode("utf-8", "replace")}
                    if isinstance(value, dict) and matches(value, symbol):
                        write(render(value))
                        shown += 1
                        if count is not None and shown >= count:
                            return shown
    finally:
        await consumer.stop()
    return shown


def run(settings: Settings, topic: str, symbol: str | None, from_beginning: bool, count: int | None) -> int:
    try:
        topic_name(settings, topic)
    except UnknownTopic as exc:
        print(f"krakenflow tail: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(tail(settings, topic, symbol, from_beginning, count))
    except KeyboardInterrupt:
        pass
    return 0

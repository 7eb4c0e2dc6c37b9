"""The Faust tables, defined on the app they are given: books (RocksDB, co-partitioned with
``kraken.raw``) and instrument precisions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mode.utils.times import want_seconds

from app.settings import Settings
from app.topics import ExtraTopic

#: The books changelog's compaction on Apache Kafka (measured: ``bench/faults.py --scenario restore``). Kafka
#: compacts only rolled segments; its defaults (1 GB or 7 days) never roll a changelog that grows ~940
#: records/s (12 pairs at 20 frames/s, ~140 transactions/s), so a worker with an empty data dir read the
#: whole history: 39 s three minutes into a run, linear in uptime. A segment per 10 s (or 4 MiB in a
#: burst), cleanable once 10 s old whatever its dirty ratio (so the ratio stays at its default), leaves a
#: restore the live keys plus the last ~10-25 s of writes (the broker's cleaner looks every 15 s): ~18k
#: records after an hour as after a minute. Emptied pages' tombstones and the markers of cleaned
#: transactions go 60 s after a clean, longer than a restore reads; one that still misses a tombstone keeps
#: a page its meta record no longer lists, which is never read. No minimum lag: nothing reads old versions.
BOOKS_CHANGELOG_CONFIGS: dict[str, str] = {
    "segment.ms": "10000",
    "segment.bytes": str(4 << 20),
    "max.compaction.lag.ms": "10000",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "60000",
}


def changelog_compaction(settings: Settings) -> dict[str, str]:
    """A table changelog's configs: the compaction above, on a broker that keeps topic configs. Every
    table's changelog needs it (the candles' too: with Kafka's defaults its restore read grew with uptime,
    ~34k records an hour at 12 pairs)."""
    return dict(BOOKS_CHANGELOG_CONFIGS) if settings.profile.topic_configs else {}


@dataclass(slots=True)
class Tables:
    #: Book pages and per-pair meta (:mod:`tables.books`); raw bytes keys and values, so that changelog
    #: records written in batches by the agent are exactly what Faust recovers.
    books: Any
    #: ``BTC/USD`` -> ``b"1,8"`` (price, qty precision) on every worker. Tiny and rarely written, so an
    #: in-memory global table rebuilt from its changelog at start is enough.
    instruments: Any

    def precision_of(self, symbol: str) -> tuple[int, int] | None:
        value = self.instruments.get(symbol.encode())
        if not value:
            return None
        price, _, qty = value.decode().partition(",")
        return int(price), int(qty)

    def remember_precision(self, symbol: str, precision: tuple[int, int]) -> None:
        value = f"{precision[0]},{precision[1]}".encode()
        if self.instruments.get(symbol.encode()) != value:
            self.instruments[symbol.encode()] = value


def define_tables(app: Any, settings: Settings) -> Tables:
    # the compaction configs only where the broker keeps topic configs (the embedded broker relies on none)
    books = app.Table("books", key_type=bytes, value_type=bytes, partitions=settings.raw_partitions,
                      extra_topic_configs=changelog_compaction(settings))
    instruments = app.GlobalTable(
        "instruments", key_type=bytes, value_type=bytes, partitions=1,
        store="memory://instruments",  # a bare "memory://" URL is falsy in yarl
        use_partitioner=True,
    )
    return Tables(books, instruments)


def changelog_topics(app: Any) -> tuple[ExtraTopic, ...]:
    """Every table's changelog topic as Faust would create it: partitions, cleanup policy, retention
    (Faust's ``Transport._topic_config``), so a worker can create them before Faust starts."""
    topics = []
    for table in app.tables.values():
        topic = table.changelog_topic
        configs = {k: str(v) for k, v in (topic.config or {}).items()}
        policy = [name for name, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on]
        if policy:
            configs.setdefault("cleanup.policy", ",".join(policy))
        if topic.retention:
            configs.setdefault("retention.ms", str(int(want_seconds(topic.retention) * 1000)))
        topics.append(ExtraTopic(topic.get_topic_name(), int(topic.partitions or app.conf.topic_partitions),
                                 configs))
    return tuple(topics)

"""The topic registry: every topic krakenflow writes, with its partitioning, cleanup policy and record.

:func:`ensure_topics` creates them with their partition counts (brokers may auto-create with others);
``krakenflow tail``, the README's schema section and the compose ``topics`` service follow this list
(a test checks that they agree). Faust's own changelog topics (``<app id>-books-changelog``, ...) have
their tables' configs (:mod:`tables.definitions`); a worker creates them with the others before Faust
starts (:func:`tables.definitions.changelog_topics`), so that none is used before it is ready, and
brings an existing one to its table's configs (Faust never alters a topic that exists).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from app.settings import Settings
from models import records

log = logging.getLogger("krakenflow.topics")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    #: the name after the prefix: ``book.deltas`` -> ``kraken.book.deltas``
    suffix: str
    #: ``raw`` (KRAKENFLOW_RAW_PARTITIONS), ``output`` (KRAKENFLOW_OUTPUT_PARTITIONS) or ``one``
    partitions: str
    #: the record key
    key: str
    #: the record classes written to it (:mod:`models.records`); none for verbatim frames and the lock
    records: tuple[type, ...]
    cleanup: str = "delete"
    doc: str = ""


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("raw", "raw", "pair (BTC/USD), or conn:<id> for connection frames", (),
              doc="every Kraken frame verbatim; headers recv_ns, conn_id, seq"),
    TopicSpec("book.deltas", "output", "symbol (BTC-USD)", (records.BookDeltaRecord,),
              doc="one record per applied book message"),
    TopicSpec("book.snapshots", "output", "symbol", (records.BookSnapshotRecord,),
              doc="top levels on a time grid and after exchange snapshots"),
    TopicSpec("book.events", "output", "symbol", (records.BookEventRecord,), doc="book state changes"),
    TopicSpec("metrics", "output", "symbol",
              (records.BookMetricRecord, records.SubscriptionErrorRecord, records.WhaleTradeRecord,
               records.TradeGapRecord, records.ExchangeStatusRecord),
              doc="per-interval book metrics, subscription errors, whale-trade alerts, trade gaps, exchange status"),
    TopicSpec("deadletter", "output", "symbol or raw key", (records.DeadLetterRecord,),
              doc="raw records that could not be used, with the reason"),
    TopicSpec("trades", "output", "symbol", (records.TradeRecord,), doc="normalized trades"),
    TopicSpec("tickers", "output", "symbol", (records.TickerRecord,), doc="normalized tickers"),
    TopicSpec("candles", "output", "symbol", (records.CandleRecord,), doc="closed 1m/5m/1h candles"),
    TopicSpec("control", "one", "pair", (records.ControlRecord,), doc="resync requests to the live ingest"),
    TopicSpec("ingest.lock", "one", "-", (), doc="the live-ingest election (a consumer group; no data)"),
    TopicSpec("books.fence", "one", "-", (),
              doc="the book workers' transactions commit their group's offset of it, which Kafka checks against "
                  "the group generation (agents/transactions.py; no data)"),
)

BY_SUFFIX = {spec.suffix: spec for spec in TOPICS}
#: Topics consumers read (``krakenflow tail`` follows these).
OUTPUTS = tuple(spec.suffix for spec in TOPICS if spec.partitions == "output")


def partitions_of(spec: TopicSpec, settings: Settings) -> int:
    return {"raw": settings.raw_partitions, "output": settings.output_partitions, "one": 1}[spec.partitions]


def topic_configs(spec: TopicSpec, settings: Settings) -> dict[str, str]:
    """The topic's broker configs: cleanup policy, retention of ``kraken.raw`` (the replay source),
    ``min.insync.replicas`` 2 once there are replicas to spare (acks=all then survives one broker down)."""
    configs = {"cleanup.policy": spec.cleanup}
    if spec.suffix == "raw":
        configs["retention.ms"] = str(int(settings.raw_retention_hours * 3_600_000))
    if settings.replication_factor > 1:
        configs["min.insync.replicas"] = str(min(2, settings.replication_factor - 1))
    return configs


def topic_layout(settings: Settings) -> dict[str, int]:
    """Topic name -> partitions."""
    return {settings.topic(spec.suffix): partitions_of(spec, settings) for spec in TOPICS}


@dataclass(frozen=True, slots=True)
class ExtraTopic:
    """A topic beside the registry's (a Faust table's changelog): name, partitions, broker configs."""

    name: str
    partitions: int
    configs: dict[str, str]


READY_TIMEOUT = 30.0  # seconds to wait for new topics' partitions to have leaders
SILENT_GRACE = 5.0  # seconds a broker that does not answer is asked again before it counts as down


async def ensure_topics(settings: Settings, extra: tuple[ExtraTopic, ...] = ()) -> None:
    """Create the registry's topics and ``extra`` where missing, and return once every one of them has
    a leader for each partition. Kafka answers a metadata request for a topic created a moment ago
    without its partitions; a client that looks then (Faust's producer, after it creates a changelog)
    keeps that answer until its next refresh, and its sends fail. An ``extra`` topic that exists gets
    its configs (a changelog created by an older version without its compaction settings)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # here: the registry alone imports no client
    from aiokafka.errors import TopicAlreadyExistsError

    from app.security import kafka_client_config

    layout = {settings.topic(spec.suffix): (partitions_of(spec, settings),
                                            topic_configs(spec, settings) if settings.profile.topic_configs else {})
              for spec in TOPICS}
    layout.update({t.name: (t.partitions, t.configs) for t in extra})
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="krakenflow-admin",
                                **kafka_client_config(settings))
    try:
        await admin.start()  # in the try: a refused start (a wrong password) still closes the client
        existing = set(await admin.list_topics())
        wanted = [NewTopic(name, partitions, settings.replication_factor, topic_configs=configs)
                  for name, (partitions, configs) in layout.items() if name not in existing]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another process created them first
            log.info("created topics %s", ", ".join(t.name for t in wanted))
            await _wait_ready(admin, {t.name: t.num_partitions for t in wanted})
        # every one, not only those listed before: one created meanwhile by another process (or an older
        # version) raced the listing, and one just created here has its configs (nothing is altered)
        await align_configs(admin, {t.name: t.configs for t in extra if t.configs})
    finally:
        await admin.close()


async def align_configs(admin: Any, topics: dict[str, dict[str, str]]) -> None:
    """Set ``topics[name]``'s configs on each existing topic whose values differ, keeping its other
    topic-level configs (AlterConfigs replaces a topic's whole set). The registry's own topics are left
    as they are: an operator may have tuned their retention."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    if not topics:
        return
    described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in topics])
    changes = []
    for response in described:
        for error, _, _, name, entries in (r[:5] for r in response.resources):
            if error != 0 or name not in topics:
                log.warning("cannot read the configs of topic %s (error %d); leaving them", name, error)
                continue
            # entry: (name, value, read_only, is_default (v0) | config_source (v1+; 1: set on the topic), ...)
            values = {e[0]: e[1] for e in entries}
            own = {e[0]: e[1] for e in entries if (e[3] is False if isinstance(e[3], bool) else e[3] == 1)}
            differ = {k: v for k, v in topics[name].items() if values.get(k) != v}
            if differ:
                log.info("topic %s: setting %s", name, ", ".join(f"{k}={v}" for k, v in sorted(differ.items())))
                changes.append(ConfigResource(ConfigResourceType.TOPIC, name, {**own, **topics[name]}))
    if changes:
        for response in await admin.alter_configs(changes):
            for error, message, _, name in (r[:4] for r in response.resources):
                if error != 0:
                    log.warning("topic %s: its configs were not set (error %d: %s)", name, error, message)


async def unready_topics(client: Any, topics: dict[str, int], silent: set[int] | None = None) -> set[str]:
    """Topics some broker does not yet know with ``topics[name]`` partitions, each with a leader. Every
    broker is asked: each answers from its own copy of the cluster metadata, which follows the
    controller's with a lag (29 of 30 answers right after a create lagged on 3 nodes). The brokers that
    did not answer go into ``silent``."""
    from aiokafka.protocol.metadata import MetadataRequest

    unready: set[str] = set()
    for broker in list(client.cluster.brokers()):
        try:
            response = await client.send(broker.nodeId, MetadataRequest(list(topics), False))
        except Exception:  # a broker down, or not connected yet: the caller decides
            if silent is not None:
                silent.add(broker.nodeId)
            continue
        for topic in response.topics:  # (error, name, [is_internal,] partitions: (error, id, leader, ...))
            name, partitions = topic[1], topic[-1]
            if topic[0] != 0 or len(partitions) < topics.get(name, 0) or any(p[2] < 0 for p in partitions):
                unready.add(name)
    return unready


async def _wait_ready(admin: Any, topics: dict[str, int]) -> None:
    from aiokafka.errors import KafkaError

    client = admin._client  # the admin's own client (aiokafka's admin has no metadata call of its own)
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        silent: set[int] = set()
        asked = {broker.nodeId for broker in client.cluster.brokers()}
        pending = await unready_topics(client, topics, silent)
        waited = loop.time() - started
        # a broker that does not answer may be one that has not caught up (not connected yet, under
        # load: the suite saw every topic missing on one broker after the others said ready), so it is
        # asked again for a while; after that it counts as down and the others answer for the cluster,
        # if one did: a node starting up may answer metadata with no brokers, which leaves aiokafka's
        # client none to ask, and no broker asked passed for every broker ready (a fresh 3-node cluster
        # in the suite: a broker then had none of the topics)
        if not pending and asked - silent and (not silent or waited > SILENT_GRACE):
            if silent:
                log.warning("brokers %s did not answer; topics ready on the others", sorted(silent))
            return
        if waited > READY_TIMEOUT:
            log.warning("topics %s have no leader for every partition on every broker after %.0f s; going on",
                        ", ".join(sorted(pending)) or "(brokers silent)", READY_TIMEOUT)
            return
        if not asked:  # none known: the bootstrap servers are asked again, as at start
            with contextlib.suppress(KafkaError):
                await client.bootstrap()
        elif silent:
            await client.force_metadata_update()  # the brokers as the cluster lists them now
        await asyncio.sleep(0.1)  # polling broker metadata: Kafka offers no notification

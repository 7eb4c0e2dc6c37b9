"""The broker profile: what krakenflow's Kafka clients do differently on Apache Kafka and on Tansu.

Chosen by ``KRAKENFLOW_BROKER_PROFILE`` (``apache-kafka``, the default, or ``embedded``), and by
``krakenflow run`` when it starts the embedded broker; never guessed from a host name. Every
workaround for the embedded broker (Tansu, memory only; see the README) lives in this module, and
each is off on Apache Kafka:

1. **Fetch wait.** Tansu answers a fetch only when ``fetch_max_wait_ms`` expires, even with records
   waiting; Faust's consumer hardcodes 1500 ms (~700 ms of latency per record). On the embedded
   profile Faust's broker URL uses the ``tansu://`` scheme, a Faust transport (registered as an entry
   point in ``pyproject.toml``) whose consumer waits 20 ms.
2. **ListOffsets.** Tansu answers ListOffsets(LATEST) with the base offset of the last batch + 1, so
   producers send one record per batch, and the book changelog writer sends its last record in a
   batch of its own (Faust recovers tables up to that offset).
3. **No InitProducerId**: no idempotent or transactional producers, so no exactly-once.
4. **No topic configs, no compression** are relied on: topics are created without configs and
   records are sent uncompressed.

On Apache Kafka every producer is idempotent (the ingest's, replay's, the book agent's batch writer and
Faust's own, through the ``kafka+idempotent://`` transport), records are zstd-compressed (measured in
``bench/compression.py``: smaller and cheaper than lz4 on both ``kraken.raw`` and the deltas), and
topics get the registry's configs (retention, ``min.insync.replicas`` with replication > 1). The
book agent commits in transactions (``agents/transactions.py``), so Faust's consumer reads
``read_committed``: its table recovery must not apply the changelog records of aborted batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

APACHE_KAFKA = "apache-kafka"
EMBEDDED = "embedded"
PROFILES = (APACHE_KAFKA, EMBEDDED)

#: Tansu's fetch wait (ms) for Faust's consumer: it answers only when the wait expires.
EMBEDDED_FETCH_MAX_WAIT_MS = 20


@dataclass(frozen=True, slots=True)
class BrokerProfile:
    name: str
    #: idempotent producers (InitProducerId)
    idempotence: bool
    #: records per producer batch: 1 on Tansu (its ListOffsets), else aiokafka's default bytes
    max_batch_size: int
    #: the book changelog's last record of a flush in a batch of its own (Tansu's ListOffsets)
    changelog_single_tail: bool
    #: Faust's transport scheme: ``kafka+idempotent`` (Faust's aiokafka driver, idempotent producer) or
    #: ``tansu`` (short fetch wait)
    faust_scheme: str
    #: producer compression (``None``: uncompressed)
    compression: str | None = None
    #: create topics with the registry's configs (retention, min.insync.replicas)
    topic_configs: bool = False
    #: Kafka transactions (exactly-once book batches)
    transactions: bool = False

    @property
    def embedded(self) -> bool:
        return self.name == EMBEDDED

    def producer_config(self) -> dict[str, Any]:
        """aiokafka producer settings that depend on the broker (the ingest's, replay's)."""
        return {**self.writer_config(), "max_batch_size": self.max_batch_size}

    def writer_config(self) -> dict[str, Any]:
        """Settings of the book agent's batch writer (it sizes its own batches)."""
        return {"acks": "all", "enable_idempotence": self.idempotence, "compression_type": self.compression}

    def faust_config(self) -> dict[str, Any]:
        """Faust app settings that depend on the broker."""
        config: dict[str, Any] = {"producer_max_batch_size": self.max_batch_size, "producer_acks": -1}
        if self.compression:
            config["producer_compression_type"] = self.compression
        if self.transactions:  # the books changelog ends in transaction markers (tables/recovery.py)
            config["TableManager"] = "tables.recovery:MarkerAwareTableManager"
        return config

    def faust_broker(self, broker: str) -> str:
        """Faust's broker URL(s) (``kafka://h:p;kafka://h2:p``) with this profile's transport scheme."""
        return ";".join(
            f"{self.faust_scheme}://{part.split('://', 1)[-1].strip()}" for part in broker.split(";") if part.strip()
        )


PROFILE_SETTINGS = {
    APACHE_KAFKA: BrokerProfile(APACHE_KAFKA, idempotence=True, max_batch_size=16384,
                                changelog_single_tail=False, faust_scheme="kafka+idempotent", compression="zstd",
                                topic_configs=True, transactions=True),
    EMBEDDED: BrokerProfile(EMBEDDED, idempotence=False, max_batch_size=1, changelog_single_tail=True,
                            faust_scheme="tansu"),
}


def profile(name: str) -> BrokerProfile:
    return PROFILE_SETTINGS[name]


#: Faust's consumer waits up to 1500 ms per fetch. aiokafka keeps one fetch in flight per broker, sends a
#: broker none while records of its partitions wait to be taken (up to its 100 ms prefetch backoff), and
#: then leaves those partitions out, so a fetch sent while the book agent works may hold only idle
#: partitions (control, trades, changelogs) and the broker keeps it the whole wait: new raw records then
#: sat up to 1.5 s (measured: p50 ~870 ms receive -> delta at 1,000 frames/s).
APACHE_KAFKA_FETCH_MAX_WAIT_MS = 10

#: ... but a fetch that holds every assigned partition is answered as soon as any of them gets a record, so
#: it may wait longer: an idle worker then fetches 5 times a second, not ~90 (``app/kafka_internals.py``).
#: It bounds how late a partition resumed or seeked during such a fetch is fetched again
IDLE_FETCH_WAIT_MS = 200


def fetch_max_wait_ms(app: Any) -> int:
    """The worker consumer's fetch wait: ``KRAKENFLOW_FETCH_MAX_WAIT_MS`` of the app's settings."""
    parts = getattr(app, "parts", None)
    return int(parts.settings.fetch_max_wait_ms) if parts is not None else APACHE_KAFKA_FETCH_MAX_WAIT_MS


def _embedded_transport() -> Any:
    """Faust's aiokafka transport with a consumer that waits ``EMBEDDED_FETCH_MAX_WAIT_MS`` per fetch."""
    import aiokafka
    from faust.transport.drivers import aiokafka as driver

    from app.batching import BatchDrainMixin

    class ShortWaitConsumerThread(driver.AIOKafkaConsumerThread):  # type: ignore[misc]
        def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = EMBEDDED_FETCH_MAX_WAIT_MS  # read when its fetcher starts
            return consumer

    class ShortWaitConsumer(BatchDrainMixin, driver.Consumer):  # type: ignore[misc]
        def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
            return ShortWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class EmbeddedTransport(driver.Transport):  # type: ignore[misc]
        Consumer = ShortWaitConsumer

    return EmbeddedTransport


def _idempotent_transport() -> Any:
    """Faust's aiokafka transport whose producer is idempotent (Faust enables it only in its own
    transactions) and whose consumer reads only committed records."""
    import aiokafka
    from faust.transport.drivers import aiokafka as driver

    from app.batching import BatchDrainMixin
    from app.kafka_internals import long_idle_fetch_wait

    class IdempotentProducer(driver.Producer):  # type: ignore[misc]
        def _settings_extra(self) -> Any:
            return {"acks": "all", "enable_idempotence": True}

    class CommittedConsumerThread(driver.AIOKafkaConsumerThread):  # type: ignore[misc]
        def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
            consumer = super()._create_worker_consumer(transport)
            consumer._isolation_level = "read_committed"  # both read when its fetcher starts
            consumer._fetch_max_wait_ms = fetch_max_wait_ms(transport.app)
            return consumer

        async def on_start(self) -> None:
            await super().on_start()
            faust_consumer = self.consumer

            def wanted(tp: Any) -> bool:  # the partitions Faust takes records of (aiokafka never pauses them)
                active = faust_consumer._active_partitions
                return active is None or tp in active

            long_idle_fetch_wait(self._consumer, IDLE_FETCH_WAIT_MS, wanted)  # its fetcher exists once started

    class CommittedConsumer(BatchDrainMixin, driver.Consumer):  # type: ignore[misc]
        def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
            return CommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class IdempotentTransport(driver.Transport):  # type: ignore[misc]
        Producer = IdempotentProducer
        Consumer = CommittedConsumer

    return IdempotentTransport


def __getattr__(name: str) -> Any:
    # the faust.transports entry points, without importing Faust when this module is imported
    if name == "EmbeddedTransport":
        return _embedded_transport()
    if name == "IdempotentTransport":
        return _idempotent_transport()
    raise AttributeError(name)

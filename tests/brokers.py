"""The brokers the tests run on: one Apache Kafka for the whole session, or an embedded broker per cluster.

Apache Kafka is the reference: integration and e2e tests share one single-node KRaft cluster (started
on first use, stopped when the session ends) and are kept apart by app id and topic prefix. The
embedded broker (Tansu) is started per test cluster where its own path is tested
(``Cluster(..., broker="embedded")``). ``KRAKENFLOW_TEST_BROKER=embedded`` runs everything on Tansu.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from broker.kafka import KafkaCluster, start_kafka

KAFKA = "kafka"
EMBEDDED = "embedded"
DEFAULT = os.environ.get("KRAKENFLOW_TEST_BROKER", KAFKA)

_shared: KafkaCluster | None = None


def shared_kafka() -> KafkaCluster:
    """The session's Apache Kafka (started now if it is not running yet)."""
    global _shared
    if _shared is None:
        data = Path(tempfile.mkdtemp(prefix="krakenflow-test-kafka-"))
        _shared = start_kafka(data, nodes=1, log=data)
    return _shared


def stop_shared_kafka() -> None:
    global _shared
    if _shared is not None:
        _shared.close()
        _shared = None

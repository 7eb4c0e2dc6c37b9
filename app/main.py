"""The Faust application: ``faust -A app worker -l info``.

Settings come from ``KRAKENFLOW_*`` variables (:mod:`app.settings`). Each worker gets its own data
directory (``<data_dir>/worker-<web port>``), so several workers can share a machine; start more with
``KRAKENFLOW_WEB_PORT=6067 faust -A app worker -l info``.
"""

from __future__ import annotations

import faust

from app.settings import Settings

settings = Settings.from_env()
settings.data_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
if settings.embedded_broker:
    from app import embedded

    embedded.apply()

app = faust.App(
    settings.app_id,
    broker=settings.broker,
    store="rocksdb://",
    datadir=str(settings.data_dir / f"worker-{settings.web_port}"),
    web_host=settings.web_host,
    web_port=settings.web_port,
    canonical_url=f"http://{settings.canonical_host or settings.web_host}:{settings.web_port}",
    topic_partitions=settings.raw_partitions,
    topic_replication_factor=settings.replication_factor,
    key_serializer="raw",
    value_serializer="raw",
    # quick failover: a group join takes about half the session timeout
    broker_session_timeout=10.0,
    broker_heartbeat_interval=1.0,
    # the embedded broker answers ListOffsets wrongly for multi-record batches: one record per batch
    producer_max_batch_size=1 if settings.embedded_broker else 16384,
    producer_linger=0.0,
    producer_acks=-1,
    table_standby_replicas=0,
    web_enabled=True,
    # windowed candle tables close (and publish) expired windows on this cadence
    table_cleanup_interval=2.0,
)

raw_topic = app.topic(settings.raw_topic, key_type=bytes, value_type=bytes, partitions=settings.raw_partitions)

# registration of tables, agents, timers and views on import
from tables import faust_tables  # noqa: E402,F401
from agents import books  # noqa: E402,F401
from agents import candles  # noqa: E402,F401
from app import market_views, views  # noqa: E402,F401
from app import ingest_service  # noqa: E402,F401
from app import observability  # noqa: E402,F401

"""The Faust application factory: ``create_app(settings)`` builds the app, its topics, tables, agents,
views and metrics. Nothing is built at import time; ``faust -A app worker -l info`` gets the app from
:mod:`app` (built by this factory on first access), and tests build their own.

Settings come from ``KRAKENFLOW_*`` variables (:mod:`app.settings`); Faust's own worker flags
(``--web-port``, ``--web-host``, ``--datadir``) win over them (:mod:`app.datadir`).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import IO, Any

import faust

from agents.books import register_books
from agents.candles import Candles, register_candles
from agents.ingest import register_ingest
from agents.pipeline import BookPipeline
from agents.supervision import TaskRestarts
from app import datadir, kafka_internals
from app.batching import BatchChannel
from app.health import register_health
from app.market_views import register_market_views
from app.observability import register_metrics
from app.security import faust_credentials, kafka_client_config
from app.settings import Settings
from app.shutdown import exit_after
from app.topics import ensure_topics
from app.ui import register_ui
from app.views import register_book_views
from ingest.service import Ingest
from models import native
from tables.definitions import Tables, changelog_topics, define_tables

log = logging.getLogger("krakenflow.app")


@dataclass(slots=True)
class Parts:
    """What the factory built beside the Faust app (for views, metrics and tests)."""

    settings: Settings
    raw_topic: Any
    tables: Tables
    pipeline: BookPipeline
    candles: Candles
    ingest: Ingest


class KrakenflowApp(faust.App):  # type: ignore[misc]
    """A Faust app that settles its data directory when the worker starts (after Faust's flags)."""

    parts: Parts
    _datadir_lock: IO[str] | None = None
    #: this worker's name (``<datadir>/worker-id``), set when the worker starts
    worker_id: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: topics whose fetched batches the consumer hands to an agent whole (app/batching.py)
        self.batch_channels: dict[str, BatchChannel] = {}

    async def on_first_start(self) -> None:
        settings = self.parts.settings
        # `faust --datadir` sets F_DATADIR after Faust has loaded the app (to list its commands), so it is
        # read here; --web-port is applied by then too
        flag = datadir_flag()
        path = datadir.worker_datadir(flag, settings.data_dir, int(self.conf.web_port))
        with warnings.catch_warnings():  # Faust warns that datadir was read before; no store is open yet
            warnings.simplefilter("ignore")
            self.conf.datadir = path
        self._datadir_lock = datadir.lock(path)
        self.worker_id = datadir.worker_id(path)
        tabledir = self.conf.tabledir
        if tabledir.exists():
            reason = await datadir.stale_reason(settings.kafka_bootstrap, tabledir, self.conf.id,
                                                 kafka_client_config(settings))
            if reason is not None:
                datadir.move_aside(tabledir, path, reason)
        if settings.profile.topic_configs:  # a broker that keeps configs (Apache Kafka)
            # every topic, changelogs included, exists with its partitions led before Faust uses one
            await ensure_topics(settings, changelog_topics(self))
        await super().on_first_start()

    async def on_stop(self) -> None:
        # from the first step of the stop: Faust's consumer stop (its commit) already waits on the broker;
        # only in a worker process, which ends with the stop (an app stopped in a test process goes on)
        if self.in_worker:
            exit_after(self.parts.settings.stop_timeout, "the worker")
        await self.parts.ingest.withdraw()  # a worker on its way out must not win the ingest lock
        await super().on_stop()


#: What the Faust CLI exports as F_DATADIR when ``--datadir`` is not given (its option's default).
FAUST_DEFAULT_DATADIR = "{conf.name}-data"


def datadir_flag() -> str | None:
    """The directory given with ``faust --datadir`` (the CLI exports it as F_DATADIR), or None."""
    value = os.environ.get("F_DATADIR")
    return None if not value or value == FAUST_DEFAULT_DATADIR else value


def create_app(settings: Settings | None = None) -> KrakenflowApp:
    """The Faust app for ``settings`` (default: from the environment), with everything registered."""
    settings = settings or Settings.from_env()
    native.use(settings.native)
    kafka_internals.tolerate_cleaned_control_batches()  # Faust's consumer reads the compacted books changelog
    kafka_internals.reuse_zstd_contexts()  # zstd batches: Faust's clients' and the agent's writers'
    profile = settings.profile
    flag = datadir_flag()
    credentials = faust_credentials(settings)  # TLS/SASL (app/security.py); None for PLAINTEXT
    secure: dict[str, Any] = {} if credentials is None else {"broker_credentials": credentials}
    app = KrakenflowApp(
        settings.app_id,
        broker=profile.faust_broker(settings.broker),
        store="rocksdb://",
        datadir=str(datadir.worker_datadir(flag, settings.data_dir, settings.web_port)),
        web_host=settings.web_host,
        web_port=settings.web_port,
        canonical_url=f"http://{settings.canonical_host or settings.web_host}:{settings.web_port}",
        topic_partitions=settings.raw_partitions,
        topic_replication_factor=settings.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        # quick failover: a killed worker's partitions move after the session timeout (10 s by default)
        broker_session_timeout=settings.group_session_timeout,
        broker_heartbeat_interval=1.0,
        producer_linger=0.0,
        table_standby_replicas=0,
        web_enabled=True,
        **profile.faust_config(),
        **secure,
    )
    raw_topic = app.topic(settings.raw_topic, key_type=bytes, value_type=bytes, partitions=settings.raw_partitions)
    tables = define_tables(app, settings)
    restarts = TaskRestarts()
    pipeline = register_books(app, settings, raw_topic, tables, restarts)
    candles = register_candles(app, settings, restarts)
    register_book_views(app, pipeline, tables.books)
    register_ui(app, pipeline, tables.books)
    register_market_views(app, pipeline, tables.books, candles)
    ingest = register_ingest(app, settings, restarts)
    register_metrics(app, settings, pipeline, ingest, candles, restarts)
    register_health(app, settings, pipeline, ingest)
    app.parts = Parts(settings, raw_topic, tables, pipeline, candles, ingest)
    return app

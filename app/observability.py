"""``/metrics`` on every worker's web port: krakenflow's collectors plus Faust's Prometheus sensor."""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from agents.candles import Candles
from agents.pipeline import BookPipeline
from agents.supervision import TaskRestarts
from app.metrics import CandleCollector, IngestCollector, WorkerCollector
from app.settings import Settings
from ingest.service import Ingest


def register_metrics(app: Any, settings: Settings, pipeline: BookPipeline, ingest: Ingest,
                     candles: Candles, restarts: TaskRestarts) -> CollectorRegistry:
    """``/metrics`` on ``app`` from a registry of its own (several apps may share a process in tests)."""
    registry = CollectorRegistry()
    registry.register(WorkerCollector(pipeline, app))
    registry.register(CandleCollector(candles, restarts))
    registry.register(IngestCollector(ingest))  # krakenflow_ingest_live is 0 unless this worker holds the role
    if settings.faust_sensor:
        # Faust's own metrics (faust_*: events, lag offsets, commits, rebalances, table operations), served
        # with ours from the same registry. It costs some per-event time; KRAKENFLOW_FAUST_SENSOR=0 removes it.
        from faust.sensors.prometheus import setup_prometheus_sensors

        setup_prometheus_sensors(app, pattern="/metrics", registry=registry, name_prefix="faust")
    else:

        @app.page("/metrics")
        class Metrics(View):
            async def get(self, request: Request) -> Response:
                return self.web.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return registry

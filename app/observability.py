"""``/metrics`` on every worker's web port: krakenflow's collectors plus Faust's Prometheus sensor."""

from __future__ import annotations

from faust.sensors.prometheus import setup_prometheus_sensors
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from agents.books import pipeline
from app.ingest_service import ingest
from app.main import app, settings
from app.metrics import IngestCollector, WorkerCollector

REGISTRY.register(WorkerCollector(pipeline, app))
REGISTRY.register(IngestCollector(ingest))  # krakenflow_ingest_live is 0 unless this worker holds the role

if settings.faust_sensor:
    # Faust's own metrics (faust_*: events, lag offsets, commits, rebalances, table operations), served
    # with ours from the same registry. It costs some per-event time; KRAKENFLOW_FAUST_SENSOR=0 removes it.
    setup_prometheus_sensors(app, pattern="/metrics", registry=REGISTRY, name_prefix="faust")
else:

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.web.bytes(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST.split(";")[0])

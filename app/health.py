"""Liveness and readiness: ``/healthz`` and ``/readyz`` on every worker and on a standalone ingest.

``/healthz`` answers 200 while the process serves requests at all (an orchestrator restarts it
otherwise). ``/readyz`` answers 200 only when the process does its job, else 503 naming each check that
fails, so a load balancer or ``depends_on: condition: service_healthy`` waits for it:

- a worker is ready when its tables are recovered, no rebalance is under way, each assigned
  ``kraken.raw`` partition is within ``KRAKENFLOW_READY_LAG`` records of its end, and, if it holds the
  cluster's ingest, every Kraken connection is up;
- a standalone ingest is ready when it is a standby (another process streams), or when it holds the
  ingest and every Kraken connection is up.

The checks are plain functions over the parts' state, so the two servers share them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agents.pipeline import BookPipeline
from app.settings import Settings
from ingest.service import Ingest


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def ingest_check(ingest: Ingest, enabled: bool = True) -> Check:
    """The ingest role: fine as a standby; when live, every Kraken connection must be up."""
    if not enabled:
        return Check("ingest", True, "not an ingest candidate (KRAKENFLOW_INGEST=off)")
    if not ingest.active.is_set():
        return Check("ingest", True, "standby: another process holds the cluster's ingest")
    connections = ingest.connections
    down = [n for n, c in enumerate(connections) if not c.connected.is_set()]
    if not connections:
        return Check("ingest", False, "live, but no Kraken connection opened yet")
    if down:
        return Check("ingest", False, f"live, Kraken connection(s) {down} of {len(connections)} down "
                                      "(see krakenflow_ingest_reconnects for why)")
    return Check("ingest", True, f"live, {len(connections)} Kraken connection(s) up")


def worker_checks(app: Any, settings: Settings, pipeline: BookPipeline, ingest: Ingest) -> list[Check]:
    checks: list[Check] = []
    recovery = app.tables.recovery
    if getattr(app, "rebalancing", False):
        checks.append(Check("rebalance", False, "a consumer group rebalance is under way"))
    else:
        checks.append(Check("rebalance", True, "no rebalance under way"))
    if not recovery.completed.is_set() or recovery.in_recovery:
        checks.append(Check("tables", False, "tables are recovering from their changelogs"))
    else:
        checks.append(Check("tables", True, "tables recovered"))
    try:
        assigned = sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == settings.raw_topic)
    except Exception:  # the consumer is not started yet
        checks.append(Check("partitions", False, "the consumer has not started"))
        assigned = None
    if assigned is not None:
        lag = pipeline.consumer_lag(app)
        behind = {p: n for p, n in sorted(lag.items()) if n > settings.ready_lag}
        if behind:
            checks.append(Check("partitions", False, f"raw partitions behind by more than {settings.ready_lag} "
                                                     f"records (KRAKENFLOW_READY_LAG): {behind}"))
        else:
            checks.append(Check("partitions", True, f"assigned raw partitions {assigned} caught up"))
    checks.append(ingest_check(ingest, settings.ingest == "auto"))
    return checks


def readiness(checks: Sequence[Check]) -> tuple[int, dict[str, Any]]:
    """HTTP status and JSON body of ``/readyz``."""
    ready = all(c.ok for c in checks)
    body = {"ready": ready, "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks}}
    return (200 if ready else 503), body


def register_health(app: Any, settings: Settings, pipeline: BookPipeline, ingest: Ingest) -> None:
    from faust.web import Request, Response, View

    from app.routing import json_response

    @app.page("/healthz")
    class Healthz(View):
        async def get(self, request: Request) -> Response:
            return json_response(self.web, {"alive": True})

    @app.page("/readyz")
    class Readyz(View):
        async def get(self, request: Request) -> Response:
            status, body = readiness(worker_checks(app, settings, pipeline, ingest))
            return json_response(self.web, body, status=status)


async def start_ingest_server(ingest: Ingest, host: str, port: int, registry: Any) -> Any:
    """``/metrics``, ``/healthz`` and ``/readyz`` of a standalone ``krakenflow ingest`` on its event loop
    (the checks read asyncio state, which a server thread must not). Returns the runner to clean up."""
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def readyz(request: web.Request) -> web.Response:
        status, body = readiness([ingest_check(ingest)])
        return web.json_response(body, status=status)

    server = web.Application()
    server.add_routes([web.get("/metrics", metrics), web.get("/healthz", healthz), web.get("/readyz", readyz)])
    runner = web.AppRunner(server, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner

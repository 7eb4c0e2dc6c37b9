"""``/healthz`` and ``/readyz`` on a worker and on standalone ingests, against the real pipeline.

Readiness follows the process's job: a standby ingest is ready, a live one only while Kraken is
connected; a worker once its tables are recovered and its partitions caught up, and, when it holds the
cluster's ingest, only while that ingest is connected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Cluster, http_json, wait_until

pytestmark = pytest.mark.e2e


def ready(port: int) -> Any:
    return http_json(f"http://127.0.0.1:{port}/readyz")


def answers(port: int, status: int) -> Any:
    """The /readyz body once it answers with ``status`` (200 bodies carry no status key)."""
    body = ready(port)
    return body if body is not None and body.get("status", 200) == status else None


def test_readiness_of_ingests_and_workers(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, ["BTC/USD", "ETH/USD"], depth=10)
    try:
        live = cluster.start_ingest("ingest-a")
        body = wait_until(lambda: (lambda b: b if b and b["checks"]["ingest"]["detail"].startswith("live") else None)(
            answers(live, 200)), 60, "the first ingest to be elected and ready")
        assert body["ready"] is True and body["checks"]["ingest"]["detail"] == "live, 1 Kraken connection(s) up"
        standby = cluster.start_ingest("ingest-b")
        body = wait_until(lambda: answers(standby, 200), 60, "the standby ingest to answer")
        assert body["checks"]["ingest"] == {"ok": True, "detail": "standby: another process holds the cluster's ingest"}
        assert http_json(f"http://127.0.0.1:{standby}/healthz") == {"alive": True}

        web = cluster.start_worker()
        body = wait_until(lambda: answers(web, 200), 90, "the worker to be ready")
        assert set(body["checks"]) == {"rebalance", "tables", "partitions", "ingest"}
        assert all(check["ok"] for check in body["checks"].values())
        assert "caught up" in body["checks"]["partitions"]["detail"]
        assert body["checks"]["ingest"]["detail"].startswith("not an ingest candidate")
        assert http_json(f"http://127.0.0.1:{web}/healthz") == {"alive": True}

        # Kraken gone: the live ingest is alive but not ready, and says which connection is down; the
        # standby and the worker (which holds no ingest) stay ready
        cluster.stop("sim")
        body = wait_until(lambda: answers(live, 503), 60, "the live ingest to report not ready")
        assert body["ready"] is False and body["checks"]["ingest"]["ok"] is False
        assert "Kraken connection(s) [0] of 1 down" in body["checks"]["ingest"]["detail"]
        assert http_json(f"http://127.0.0.1:{live}/healthz") == {"alive": True}
        assert answers(standby, 200) and answers(web, 200)

        # a worker that takes over the ingest while Kraken is away is not ready, naming the ingest
        cluster.stop("ingest-a")
        cluster.stop("ingest-b")
        second = cluster.start_worker("worker-2", env={"KRAKENFLOW_INGEST": "auto"})
        body = wait_until(lambda: answers(second, 503) if (ready(second) or {}).get("checks", {}).get(
            "ingest", {}).get("detail", "").startswith("live") else None, 90, "the worker holding the ingest")
        assert body["checks"]["ingest"]["ok"] is False
        assert {name for name, check in body["checks"].items() if not check["ok"]} >= {"ingest"}
    finally:
        cluster.close()

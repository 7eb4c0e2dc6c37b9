"""Dashboards proven on a real Prometheus scraping a real worker and ingest fed by the simulator.

Grafana cannot be installed here, so every panel's PromQL is run through Prometheus's HTTP API
instead: each must return data, and every metric name a dashboard uses must exist.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaProducer

from tests.cluster import Cluster, http_json, wait_until
from tests.debian import debian_prometheus
from tests.processes import ROOT, free_port

pytestmark = pytest.mark.e2e

ALERTS = ROOT / "deploy" / "alerts.yml"
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))


def panels() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) for every target of every panel."""
    out = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                out.append((board["title"], panel["title"], target["expr"]))
    return out


def query(port: int, promql: str) -> list[dict[str, Any]]:
    answer = http_json(f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(promql)}")
    assert answer and answer.get("status") == "success", (promql, answer)
    return list(answer["data"]["result"])


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, int]]:
    binary = debian_prometheus()
    tmp = tmp_path_factory.mktemp("prometheus")
    cluster = Cluster(tmp, ["BTC/USD", "ETH/USD", "PEPE/USD"], depth=10, sim_args=("--pair-rate", "20"))
    prom = None
    try:
        ingest_port = cluster.start_ingest()
        web = cluster.start_worker()
        port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files: ['{ROOT / 'deploy' / 'alerts.yml'}']\nscrape_configs:\n"
            f"  - job_name: krakenflow-worker\n    static_configs:\n      - targets: ['127.0.0.1:{web}']\n"
            f"  - job_name: krakenflow-ingest\n    static_configs:\n      - targets: ['127.0.0.1:{ingest_port}']\n"
        )
        prom = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=open(tmp / "prometheus.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )
        wait_until(lambda: len([r for r in (http_json(f"http://127.0.0.1:{web}/books/") or {"books": []})["books"]
                                if r["state"] == "live"]) == 3, 60, "live books")
        # make the rare series exist: a reconnect, a checksum failure with its resync, a dead letter
        # (the corruption first: the simulator spends it on the pair's next event, which nobody would
        # receive while the ingest reconnects after a drop)
        cluster.sim("corrupt", symbol="ETH/USD")
        wait_until(lambda: query(port, 'krakenflow_resyncs_total{symbol="ETH-USD"} > 0'), 60, "the resync to be scraped")
        cluster.sim("drop")
        asyncio.run(_publish_garbage(cluster))
        wait_until(lambda: query(port, "krakenflow_ingest_reconnects_total"), 60, "the reconnect to be scraped")
        wait_until(lambda: query(port, 'count_over_time(up{job="krakenflow-worker"}[1m]) >= 20'), 60,
                   "20 s of samples for rate()")
        yield cluster, port
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(timeout=30)
        cluster.close()


async def _publish_garbage(cluster: Cluster) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, max_batch_size=1)
    await producer.start()
    try:
        await (await producer.send(cluster.topic("raw"), b"{not json", key=b"BTC/USD"))
    finally:
        await producer.stop()


def test_there_are_three_dashboards_with_provisioning() -> None:
    assert [p.name for p in DASHBOARDS] == ["books.json", "kafka-faust.json", "pipeline.json"]
    assert (ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml").exists()
    assert (ROOT / "grafana" / "provisioning" / "dashboards" / "krakenflow.yml").exists()
    assert len(panels()) >= 25


def test_every_panel_returns_data(scraped: tuple[Cluster, int]) -> None:
    _, port = scraped
    empty = [(board, title, expr) for board, title, expr in panels() if not query(port, expr)]
    assert empty == [], "panels without data"


def test_every_metric_a_dashboard_uses_exists(scraped: tuple[Cluster, int]) -> None:
    _, port = scraped
    names = {name for _, _, expr in panels() for name in re.findall(r"\b((?:krakenflow|faust)_[a-z_]+)", expr)}
    missing = [name for name in sorted(names) if not query(port, f'count({{__name__="{name}"}})')]
    assert missing == []
    assert len(names) >= 20


def alert_names() -> set[str]:
    return {rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]}


def test_every_metric_an_alert_uses_exists(scraped: tuple[Cluster, int]) -> None:
    _, port = scraped
    rules = http_json(f"http://127.0.0.1:{port}/api/v1/rules")["data"]["groups"]
    loaded = {rule["name"] for group in rules for rule in group["rules"]}
    assert loaded == alert_names(), "Prometheus did not load deploy/alerts.yml as written"
    assert all(rule["health"] == "ok" for group in rules for rule in group["rules"])
    names = set(re.findall(r"\b(krakenflow_[a-z_]+)", ALERTS.read_text()))
    missing = [name for name in sorted(names) if not query(port, f'count({{__name__="{name}"}})')]
    assert missing == []  # every series exists from the start (a counter appearing at 1 has no increase)


def test_checksum_alert_fires_for_a_pair_kept_invalid(scraped: tuple[Cluster, int]) -> None:
    """Every PEPE/USD book message carries a wrong checksum from now on: the shipped rule fires for it."""
    cluster, port = scraped

    def firing() -> list[dict[str, Any]]:
        alerts = http_json(f"http://127.0.0.1:{port}/api/v1/alerts")["data"]["alerts"]
        return [a for a in alerts if a["labels"].get("alertname") == "KrakenflowChecksumFailures"
                and a["labels"].get("symbol") == "PEPE-USD" and a["state"] == "firing"]

    assert firing() == []
    cluster.sim("corrupt", symbol="PEPE/USD", keep=1)
    try:
        wait_until(lambda: query(port, 'krakenflow_checksum_total{symbol="PEPE-USD",result="failed"} >= 3'), 90,
                   "three checksum failures of the pair kept invalid")
        [alert] = wait_until(firing, 60, "KrakenflowChecksumFailures to fire for PEPE-USD")
        assert alert["labels"]["severity"] == "ticket"
        assert alert["annotations"]["summary"].startswith("Book PEPE-USD failed")
        assert "krakenflow verify" in alert["annotations"]["fix"]
    finally:
        cluster.sim("corrupt", symbol="PEPE/USD", keep=0)

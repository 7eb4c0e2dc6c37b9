"""The alerting rules under deploy/: valid for Prometheus, unit-tested with promtool, loaded by compose."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from tests.debian import debian_prometheus
from tests.processes import ROOT

pytestmark = pytest.mark.integration

DEPLOY = ROOT / "deploy"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([debian_prometheus("promtool"), *args], cwd=DEPLOY, capture_output=True, text=True,
                          timeout=120)


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"] for rule in group["rules"]]


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_rule_unit_tests_pass_and_cover_every_alert() -> None:
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {case["alertname"] for test in yaml.safe_load((DEPLOY / "alerts.test.yml").read_text())["tests"]
              for case in test["alert_rule_test"] if case.get("exp_alerts")}
    assert tested == {rule["alert"] for rule in rules()}, "every alert has a unit test where it fires"


def test_the_issue_s_alerts_exist_and_name_a_fix() -> None:
    names = {rule["alert"] for rule in rules()}
    assert {"KrakenflowBookNotLive", "KrakenflowChecksumFailures", "KrakenflowResyncStorm", "KrakenflowConsumerLag",
            "KrakenflowIngestDisconnected", "KrakenflowIngestNotElected", "KrakenflowDeadLetters",
            "KrakenflowExchangeLag"} <= names
    assert all(rule["annotations"].get("summary") and rule["annotations"].get("fix") for rule in rules())


def test_compose_prometheus_loads_the_rules() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/alerts.yml:/etc/prometheus/alerts.yml:ro" in volumes
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in volumes
    assert yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["rule_files"] == ["alerts.yml"]
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("service,port", [("ingest", 6065), ("worker", 6066)])
def test_compose_healthchecks_ask_readyz(service: str, port: int) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    check = compose["services"][service]["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"] and f"http://127.0.0.1:{port}/readyz" in check[3]

"""Deployment files: docker-compose.yml against the Compose specification, and in agreement with the app."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings
from app.topics import topic_layout
from tests.processes import ROOT

pytestmark = pytest.mark.integration

COMPOSE = ROOT / "docker-compose.yml"


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def service_env(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in compose()["services"][name]["environment"].items()}


def test_compose_file_validates_against_the_compose_specification() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE)], capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_has_three_kraft_brokers_and_the_whole_stack() -> None:
    services = compose()["services"]
    assert set(services) == {"kafka-1", "kafka-2", "kafka-3", "topics", "ingest", "worker", "prometheus", "grafana"}
    voters = services["kafka-1"]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters == "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
    assert {services[f"kafka-{n}"]["environment"]["KAFKA_NODE_ID"] for n in (1, 2, 3)} == {1, 2, 3}
    assert services["worker"]["deploy"]["replicas"] >= 2


@pytest.mark.parametrize("name", ["ingest", "worker"])
def test_service_environment_is_krakenflow_settings(name: str) -> None:
    env = service_env(name)
    fields = {f"KRAKENFLOW_{field.upper()}" for field in Settings.__dataclass_fields__}
    assert set(k for k in env if k.startswith("KRAKENFLOW_")) <= fields, "unknown KRAKENFLOW_ variables"
    settings = Settings.from_env(env)  # validates every value
    assert settings.broker_profile == "apache-kafka" and settings.replication_factor == 3
    assert settings.kafka_bootstrap == "kafka-1:9092,kafka-2:9092,kafka-3:9092"


def test_ports_and_scrape_targets_agree_with_settings() -> None:
    services = compose()["services"]
    worker, ingest = Settings.from_env(service_env("worker")), Settings.from_env(service_env("ingest"))
    # one host port per replica, for as many workers as there are raw partitions (the most that work)
    [ports] = services["worker"]["ports"]
    host, _, container = ports.partition(":")
    first, _, last = host.partition("-")
    assert int(container) == worker.web_port
    assert int(last) - int(first) + 1 == worker.raw_partitions
    assert services["ingest"]["ports"] == [f"{ingest.ingest_metrics_port}:{ingest.ingest_metrics_port}"]
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())["scrape_configs"]
    jobs = {job["job_name"]: job for job in scrape}
    assert jobs["krakenflow-worker"]["dns_sd_configs"][0]["port"] == worker.web_port
    assert jobs["krakenflow-ingest"]["static_configs"][0]["targets"] == [f"ingest:{ingest.ingest_metrics_port}"]
    mounts = services["grafana"]["volumes"]
    for mount in mounts:
        assert (ROOT / mount.split(":")[0]).exists(), mount


def test_topics_service_creates_every_topic_with_the_settings_partitions() -> None:
    settings = Settings.from_env(service_env("worker"))
    command = compose()["services"]["topics"]["command"][0]
    created = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s*create (\S+) (\d+)", command, re.M)}
    for topic, partitions in topic_layout(settings).items():
        assert created.get(topic) == partitions, topic
    assert created[f"{settings.app_id}-books-changelog"] == settings.raw_partitions
    assert "create krakenflow-books-changelog 8 cleanup.policy=compact" in command


def test_dockerfile_copies_every_package_and_procfile_has_both_process_types() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in packages:
        top = package.split(".")[0]
        assert f"COPY {top} ./{top}" in dockerfile
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line)
    assert procfile == {"ingest": "krakenflow ingest", "worker": "faust -A app worker -l info"}

"""Typed settings: every KRAKENFLOW_ variable documented, bad values named with their fix."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from app.settings import Settings, SettingsError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


def test_every_setting_is_in_the_readme_settings_table() -> None:
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `KRAKENFLOW_")]
    names = {f"KRAKENFLOW_{f.name.upper()}" for f in fields(Settings)}
    missing = sorted(n for n in names if not any(row.split(" | ")[0].count(f"`{n}`") for row in rows))
    assert missing == []


@pytest.mark.parametrize(("env", "message"), [
    ({"KRAKENFLOW_DEPTH": "7"}, "KRAKENFLOW_DEPTH=7 is not a Kraken book depth"),
    ({"KRAKENFLOW_LOCAL_BROKER": "docker"}, "KRAKENFLOW_LOCAL_BROKER='docker'; use auto, kafka or embedded"),
    ({"KRAKENFLOW_RAW_PARTITIONS": "eight"}, "KRAKENFLOW_RAW_PARTITIONS='eight' is not a valid int"),
    ({"KRAKENFLOW_BROKER": "127.0.0.1:9092"}, "write it as kafka://host:port"),
    ({"KRAKENFLOW_INGEST_LINGER_MS": "-1"}, "KRAKENFLOW_INGEST_LINGER_MS=-1; use 0 or more milliseconds"),
    ({"KRAKENFLOW_GROUP_SESSION_TIMEOUT": "2"}, "KRAKENFLOW_GROUP_SESSION_TIMEOUT=2; use 6 to 300 seconds"),
])
def test_bad_values_name_the_variable_and_the_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)


def test_values_are_typed() -> None:
    s = Settings.from_env({"KRAKENFLOW_PAIRS": "BTC/USD, ETH/USD", "KRAKENFLOW_RAW_RETENTION_HOURS": "24",
                           "KRAKENFLOW_FAUST_SENSOR": "0", "KRAKENFLOW_BROKER": "kafka://a:1;kafka://b:2"})
    assert s.pairs == ("BTC/USD", "ETH/USD") and s.raw_retention_hours == 24.0 and s.faust_sensor is False
    assert s.kafka_bootstrap == "a:1,b:2"


def test_exactly_once_by_default_on_apache_kafka_and_never_on_the_embedded_broker() -> None:
    assert Settings.from_env({}).exactly_once
    assert not Settings.from_env({"KRAKENFLOW_BROKER_PROFILE": "embedded"}).exactly_once
    assert not Settings.from_env({"KRAKENFLOW_PROCESSING_GUARANTEE": "at_least_once"}).exactly_once
    with pytest.raises(SettingsError, match="needs Kafka transactions.*use at_least_once"):
        Settings.from_env({"KRAKENFLOW_BROKER_PROFILE": "embedded", "KRAKENFLOW_PROCESSING_GUARANTEE": "exactly_once"})
    with pytest.raises(SettingsError, match="KRAKENFLOW_PROCESSING_GUARANTEE='twice'"):
        Settings.from_env({"KRAKENFLOW_PROCESSING_GUARANTEE": "twice"})


def test_the_group_session_timeout_reaches_fausts_consumer(tmp_path: Path) -> None:
    from app.factory import create_app

    app = create_app(Settings.from_env({"KRAKENFLOW_GROUP_SESSION_TIMEOUT": "7.5", "KRAKENFLOW_DATA_DIR": str(tmp_path)}))
    assert app.conf.broker_session_timeout == 7.5

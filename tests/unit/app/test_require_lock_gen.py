"""KRAKENFLOW_REQUIRE_LOCK_GEN: which frames without the live ingest's lock_gen a worker refuses."""

from __future__ import annotations

import pytest

from app.settings import Settings, SettingsError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("env", "rule"), [
    ({}, "always"),  # Apache Kafka, the worker in the ingest election: the cluster's ingest stamps every frame
    ({"KRAKENFLOW_INGEST": "off"}, "seen"),  # maybe fed by `krakenflow replay`: once the ingest wrote a partition
    ({"KRAKENFLOW_BROKER_PROFILE": "embedded"}, "seen"),
    ({"KRAKENFLOW_REQUIRE_LOCK_GEN": "1", "KRAKENFLOW_INGEST": "off"}, "always"),
    ({"KRAKENFLOW_REQUIRE_LOCK_GEN": "0"}, "never"),  # a cluster fed by replays
    ({"KRAKENFLOW_REQUIRE_LOCK_GEN": "AUTO", "KRAKENFLOW_BROKER_PROFILE": "embedded"}, "seen"),
])
def test_the_rule_follows_the_cluster(env: dict[str, str], rule: str) -> None:
    assert Settings.from_env(env).lock_gen_rule == rule


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="KRAKENFLOW_REQUIRE_LOCK_GEN='sometimes'; use auto, 1 or 0"):
        Settings.from_env({"KRAKENFLOW_REQUIRE_LOCK_GEN": "sometimes"})

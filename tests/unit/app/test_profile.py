"""The broker profile: the embedded broker's workarounds apply on it, and none of them on Apache Kafka."""

from __future__ import annotations

import dataclasses

import pytest

from app.factory import create_app
from app.profile import APACHE_KAFKA, EMBEDDED, EMBEDDED_FETCH_MAX_WAIT_MS
from app.settings import Settings, SettingsError

pytestmark = pytest.mark.unit


def built(profile: str) -> tuple[object, object]:
    """(the Faust app, the aiokafka consumer its worker would create) for ``profile``."""
    app = create_app(Settings(broker_profile=profile, app_id=f"kf-profile-{profile}"))
    consumer = app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)
    return app, consumer


async def test_apache_kafka_runs_none_of_the_embedded_workarounds() -> None:
    settings = Settings(broker_profile=APACHE_KAFKA)
    assert settings.profile.producer_config() == {"acks": "all", "enable_idempotence": True,
                                                  "compression_type": "zstd", "max_batch_size": 16384}
    assert settings.profile.writer_config() == {"acks": "all", "enable_idempotence": True, "compression_type": "zstd"}
    assert not settings.profile.changelog_single_tail
    app, consumer = built(APACHE_KAFKA)
    assert [str(u) for u in app.conf.broker] == ["kafka+idempotent://127.0.0.1:9092"]
    assert app.conf.producer_max_batch_size == 16384 and app.conf.producer_compression_type == "zstd"
    # not Faust's 1500 ms: a fetch of idle partitions would hold new raw records that long
    assert consumer._fetch_max_wait_ms == Settings().fetch_max_wait_ms == 10
    app.parts = dataclasses.replace(app.parts, settings=Settings(fetch_max_wait_ms=25))
    assert app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)._fetch_max_wait_ms == 25
    assert app.producer._settings_extra() == {"acks": "all", "enable_idempotence": True}
    pipeline = app.parts.pipeline
    assert pipeline.store.single_tail is False
    assert pipeline.writer.config["enable_idempotence"] is True


async def test_embedded_profile_applies_each_workaround() -> None:
    settings = Settings(broker_profile=EMBEDDED)
    assert settings.profile.producer_config() == {"acks": "all", "enable_idempotence": False,
                                                  "compression_type": None, "max_batch_size": 1}
    assert not settings.profile.topic_configs
    app, consumer = built(EMBEDDED)
    assert [str(u) for u in app.conf.broker] == ["tansu://127.0.0.1:9092"]
    assert app.conf.producer_max_batch_size == 1
    assert consumer._fetch_max_wait_ms == EMBEDDED_FETCH_MAX_WAIT_MS
    assert app.producer._settings_extra() == {}  # Faust's default: no idempotence outside transactions
    assert app.parts.pipeline.store.single_tail is True
    assert app.parts.pipeline.writer.config["enable_idempotence"] is False


def test_profile_comes_from_its_setting_never_from_the_host() -> None:
    assert Settings.from_env({"KRAKENFLOW_BROKER": "kafka://localhost:9092"}).broker_profile == APACHE_KAFKA
    assert Settings.from_env({"KRAKENFLOW_BROKER_PROFILE": "embedded"}).profile.name == EMBEDDED
    with pytest.raises(SettingsError, match="KRAKENFLOW_BROKER_PROFILE='tansu'; use one of apache-kafka, embedded"):
        Settings.from_env({"KRAKENFLOW_BROKER_PROFILE": "tansu"})


def test_faust_broker_url_keeps_every_host() -> None:
    profile = Settings(broker_profile=EMBEDDED).profile
    assert profile.faust_broker("kafka://a:1;kafka://b:2") == "tansu://a:1;tansu://b:2"


def test_topic_configs_follow_the_registry() -> None:
    from app.topics import BY_SUFFIX, topic_configs

    one = Settings(raw_retention_hours=24)
    assert topic_configs(BY_SUFFIX["raw"], one) == {"cleanup.policy": "delete", "retention.ms": "86400000"}
    assert topic_configs(BY_SUFFIX["book.deltas"], one) == {"cleanup.policy": "delete"}
    three = Settings(replication_factor=3)
    assert topic_configs(BY_SUFFIX["book.deltas"], three)["min.insync.replicas"] == "2"


async def test_the_factory_builds_independent_apps() -> None:
    one = create_app(Settings(app_id="kf-one", web_port=7001))
    two = create_app(Settings(app_id="kf-two", web_port=7002))
    assert one is not two and one.conf.id == "kf-one" and two.conf.id == "kf-two"
    assert sorted(one.agents) == ["books", "candles"] and one.parts.pipeline is not two.parts.pipeline

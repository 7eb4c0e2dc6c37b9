"""One topic registry: ensure_topics, the compose topics service, `krakenflow tail` and the README agree."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from app.factory import create_app
from app.settings import Settings
from app.topics import BY_SUFFIX, OUTPUTS, TOPICS, topic_layout
from cli.tail import UnknownTopic, topic_name
from models.records import RECORD_TYPES
from tables.definitions import BOOKS_CHANGELOG_CONFIGS, changelog_topics

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


def compose_topics() -> dict[str, tuple[int, str | None]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    script = compose["services"]["topics"]["command"][0]
    return {m[1]: (int(m[2]), m[3]) for m in re.finditer(r"^\s*create (\S+) (\d+)(?: (\S+))?$", script, re.M)}


def compose_configured() -> dict[str, dict[str, str]]:
    """Topic -> the configs the compose ``topics`` service sets with ``configure <topic> k=v,k=v``."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    script = compose["services"]["topics"]["command"][0]
    return {m[1]: dict(kv.split("=", 1) for kv in m[2].split(","))
            for m in re.finditer(r"^\s*configure (\S+) (\S+)$", script, re.M)}


def compose_settings() -> Settings:
    env = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["x-krakenflow"]["environment"]
    return Settings.from_env({k: str(v) for k, v in env.items()})


def test_compose_gives_every_changelog_its_table_configs() -> None:
    """What a worker's start sets on the changelogs (their tables' configs), compose sets too."""
    changelogs = {t.name: t.configs for t in changelog_topics(create_app(compose_settings()))}
    books = f"{compose_settings().app_id}-books-changelog"
    assert changelogs[books] == {**BOOKS_CHANGELOG_CONFIGS, "cleanup.policy": "compact"}
    candles = f"{compose_settings().app_id}-candles-changelog"  # its restore must not grow with uptime either
    assert changelogs[candles] == {**BOOKS_CHANGELOG_CONFIGS, "cleanup.policy": "compact"}
    configured = compose_configured()
    for name, configs in changelogs.items():
        assert configured.get(name, {}) == {k: v for k, v in configs.items() if k != "cleanup.policy"}, name


def test_books_changelog_compaction_only_where_the_broker_keeps_configs() -> None:
    embedded = Settings.from_env({"KRAKENFLOW_BROKER_PROFILE": "embedded"})
    [books] = [t for t in changelog_topics(create_app(embedded)) if t.name.endswith("-books-changelog")]
    assert books.configs == {"cleanup.policy": "compact"}  # Tansu relies on no topic config


def test_every_record_class_has_exactly_one_topic() -> None:
    written = [r for spec in TOPICS for r in spec.records]
    assert sorted(r.__name__ for r in written) == sorted(r.__name__ for r in RECORD_TYPES)


def test_compose_creates_every_registry_topic_with_its_partitions() -> None:
    compose = compose_topics()
    settings = compose_settings()
    for name, partitions in topic_layout(settings).items():
        assert name in compose, f"docker-compose.yml does not create {name}"
        assert compose[name][0] == partitions, name
    ours = {n for n in compose if n.startswith(f"{settings.topic_prefix}.")}
    assert ours == set(topic_layout(settings)), "compose creates topics the registry does not know"
    for name, (_, config) in compose.items():
        if name.endswith("-changelog"):
            assert config == "cleanup.policy=compact", name


def test_tail_follows_registry_topics_and_refuses_others() -> None:
    settings = Settings()
    for suffix in BY_SUFFIX:
        assert topic_name(settings, suffix) == f"kraken.{suffix}"
        assert topic_name(settings, f"kraken.{suffix}") == f"kraken.{suffix}"
    with pytest.raises(UnknownTopic, match="'book.delta' is not a krakenflow topic; use one of book.deltas"):
        topic_name(settings, "book.delta")


def readme_paragraphs(topic: str) -> str:
    """The README's schema paragraphs that start with the topic's name."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Topics and schemas"):]
    section = section[: section.index("\n## ", 5)]
    paragraphs = section.split("\n\n")
    found = []
    for n, p in enumerate(paragraphs):
        if p.lstrip().startswith(f"`{topic}`"):
            found.append(p)
            if n + 1 < len(paragraphs) and paragraphs[n + 1].lstrip().startswith("```json"):
                found.append(paragraphs[n + 1])  # its sample record
    return "\n".join(found)


def test_readme_schema_section_names_every_topic_and_every_field() -> None:
    for spec in TOPICS:
        if not spec.records:
            continue
        text = readme_paragraphs(f"kraken.{spec.suffix}")
        assert text, f"README's schema section does not describe kraken.{spec.suffix}"
        for record in spec.records:
            missing = [f.name for f in dataclasses.fields(record)
                       if f.name != "schema_version" and f'"{f.name}"' not in text]  # said once for all
            assert not missing, f"README's kraken.{spec.suffix} schema lacks {missing} of {record.__name__}"


def test_outputs_are_the_topics_consumers_read() -> None:
    assert OUTPUTS == ("book.deltas", "book.snapshots", "book.events", "metrics", "deadletter", "trades",
                       "tickers", "candles")

"""The aiokafka private name ``app/kafka_internals.py`` relies on is still there and still used as it
was: this fails loudly on an aiokafka upgrade that moves it (the back-off would silently be 20 ms again)."""

from __future__ import annotations

import dis
import importlib.metadata
import tomllib
from pathlib import Path

import aiokafka.producer.sender as sender
import pytest

from app import kafka_internals

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


def test_the_installed_aiokafka_is_the_checked_and_pinned_one() -> None:
    installed = importlib.metadata.version("aiokafka")
    assert installed == kafka_internals.AIOKAFKA_VERSION, "review app/kafka_internals.py for this aiokafka"
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"aiokafka=={kafka_internals.AIOKAFKA_VERSION}" in dependencies


def test_the_concurrent_transactions_back_off_is_the_module_global_aiokafka_returns() -> None:
    assert isinstance(getattr(sender, kafka_internals.BACKOFF_NAME), float)
    # the handler reads the global on every retry (a copy made at import would ignore the change)
    loads = {i.argval for i in dis.get_instructions(sender.AddPartitionsToTxnHandler.handle_response)
             if i.opname == "LOAD_GLOBAL"}
    assert kafka_internals.BACKOFF_NAME in loads


def test_shortening_sets_it_and_a_missing_name_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sender, kafka_internals.BACKOFF_NAME, 0.02)
    kafka_internals.shorten_transaction_backoff()
    assert getattr(sender, kafka_internals.BACKOFF_NAME) == kafka_internals.TRANSACTION_BACKOFF
    monkeypatch.delattr(sender, kafka_internals.BACKOFF_NAME)
    with pytest.raises(RuntimeError, match="review app/kafka_internals.py"):
        kafka_internals.shorten_transaction_backoff()


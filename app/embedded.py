"""Workarounds for the embedded broker (Tansu), applied only when ``KRAKENFLOW_EMBEDDED_BROKER`` is on.

Tansu answers a fetch only when ``fetch_max_wait_ms`` expires, even when records are waiting; Faust
creates its consumer with a fixed 1500 ms, which put ~700 ms of latency on every record. The Faust
driver's consumer is created with a short wait instead. Apache Kafka answers as soon as data is there,
so nothing changes there.
"""

from __future__ import annotations

from typing import Any

import aiokafka
import faust.transport.drivers.aiokafka as faust_driver

FETCH_MAX_WAIT_MS = 20


class _AiokafkaWithShortFetchWait:
    """Stands in for the ``aiokafka`` module inside Faust's driver; only the consumer differs."""

    def __getattr__(self, name: str) -> Any:
        return getattr(aiokafka, name)

    @staticmethod
    def AIOKafkaConsumer(*args: Any, **kwargs: Any) -> aiokafka.AIOKafkaConsumer:  # noqa: N802 - aiokafka's name
        kwargs["fetch_max_wait_ms"] = FETCH_MAX_WAIT_MS
        return aiokafka.AIOKafkaConsumer(*args, **kwargs)


def apply() -> None:
    faust_driver.aiokafka = _AiokafkaWithShortFetchWait()  # type: ignore[assignment]

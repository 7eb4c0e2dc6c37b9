"""Every worker is an ingest candidate (``KRAKENFLOW_INGEST=auto``); the election picks one."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from agents.supervision import TaskRestarts
from app.settings import Settings
from ingest.service import Ingest
from models.backoff import Backoff

log = logging.getLogger("krakenflow.ingest")


def register_ingest(app: Any, settings: Settings, restarts: TaskRestarts) -> Ingest:
    """An ingest candidate task on ``app`` (when ``settings.ingest`` is ``auto``); returns the ingest."""
    ingest = Ingest(settings)
    if settings.ingest == "auto":

        @app.task
        async def ingest_candidate() -> None:
            backoff = Backoff(base=1.0, cap=30.0)
            while True:
                try:
                    await ingest.run()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the broker away, a rebalance storm: retry, never kill the worker
                    restarts.count("ingest_candidate")
                    delay = backoff.next_delay()
                    log.warning("ingest candidate failed (%s: %s); retrying in %.1f s", type(exc).__name__, exc,
                                delay)
                    await asyncio.sleep(delay)

    return ingest

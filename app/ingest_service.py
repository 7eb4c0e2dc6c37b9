"""Every worker is an ingest candidate (``KRAKENFLOW_INGEST=auto``); the election picks one."""

from __future__ import annotations

import asyncio
import logging

from app.ingest import Ingest
from app.kraken_client import Backoff
from app.main import app, settings

log = logging.getLogger("krakenflow.ingest")
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
                delay = backoff.next_delay()
                log.warning("ingest candidate failed (%s: %s); retrying in %.1f s", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)

"""A bound on stopping: a worker or an ingest whose broker is gone would otherwise wait on it for good
(offset commits, producer flushes, a group leave), and a supervisor's SIGTERM would never end it."""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("krakenflow")


def exit_after(seconds: float, what: str) -> threading.Timer:
    """Exit the process (status 1) if it is still running ``seconds`` from now. A thread, not a task: the
    event loop may be the thing that is stuck. What an early exit leaves undone is what a SIGKILL would:
    the next start recovers from the changelog and the raw watermark."""

    def expire() -> None:
        log.error("%s did not stop within %.0f s (is the Kafka broker reachable?): exiting now; the next start "
                  "recovers from Kafka", what, seconds)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer

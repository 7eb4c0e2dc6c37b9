"""Worker tasks that die are logged with their exception, counted and restarted, never silently gone.

Faust restarts a crashed agent itself (its supervisor, with the stream resumed where it was acked); a
timer tick that raises is skipped and the timer goes on. Both are counted here for
``krakenflow_worker_task_restarts_total{task}``.
"""

from __future__ import annotations

import logging

log = logging.getLogger("krakenflow.worker")


#: the supervised tasks, exported at 0 from the start: a counter that first appears at 1 has no increase
#: for Prometheus, so the first restart would not show in rate() or alerts
TASKS = ("books", "book_tick", "candles", "ingest_candidate")


class TaskRestarts:
    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(TASKS, 0)

    def count(self, task: str) -> int:
        """One more restart of ``task``; how many so far."""
        self.counts[task] = self.counts.get(task, 0) + 1
        return self.counts[task]

    def died(self, task: str, exc: BaseException) -> None:
        restarts = self.count(task)
        log.error("worker task %s died (%s: %s); restarting it (%d restarts so far)", task, type(exc).__name__,
                  exc, restarts, exc_info=exc)

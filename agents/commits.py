"""Group commit: the book agent never waits for the broker between batches.

The agent processes a batch, hands each raw partition's outputs and table records here and takes the
next batch. Work goes into lanes, and each lane has at most one commit in flight (a transaction under
exactly-once, else outputs then changelog); what arrives meanwhile is merged into that lane's next commit,
in order. So the deltas are computed as soon as their frames arrive, and a commit carries whatever piled
up while the previous one was with the broker: small when the load is light, large under load.

The book agent puts every partition in one lane (``one_lane``): under exactly-once one transaction per
worker per commit, whatever the number of partitions (``agents/transactions.py``); at least once one
produce request for the outputs, then one for the changelog. ``own_lane`` gives each partition its own.

Under exactly-once the input is acked before its commit: after a crash, each partition resumes from
the watermark stored with its last commit (the table), and the records after it are read again
(``agents/pipeline.py``). At least once, a batch is acked when its commits are durable (a
:meth:`GroupCommits.barrier`), so the group offset never runs ahead of the table, while the agent
already processes the next batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from models.processor import Output

Changes = dict[int, list[Any]]


@dataclass(slots=True)
class Job:
    """One batch's share of one raw partition: its outputs, the last raw offset it processed, its table
    records (by changelog partition), and what it leaves known of the pairs' precisions."""

    partition: int
    out: list[Output]
    processed: dict[int, int]
    changes: Changes
    #: the pairs' instrument precisions as the agent knew them after the batch: published once it commits
    precisions: dict[str, Any] | None = None


#: commits the jobs of one lane, in order, together; it may return a second stage (an awaitable) that
#: makes them durable: the lane's next commit starts meanwhile, and its second stage follows this one
Commit = Callable[[list[Job]], Awaitable[Awaitable[None] | None]]


def own_lane(partition: int) -> int:
    return partition


def one_lane(partition: int) -> int:
    return 0


class GroupCommits:
    def __init__(self, commit: Commit, lane: Callable[[int], int] = own_lane, max_pending: int = 50_000) -> None:
        self._commit = commit
        self._lane = lane
        #: outputs a lane may hold uncommitted before the agent waits for its commit
        self.max_pending = max_pending
        self._pending: dict[int, list[Job]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        #: each lane's last second stage, which the lane's next one waits for (their order is the lane's)
        self._stages: dict[int, asyncio.Future[None]] = {}
        self._error: BaseException | None = None
        self.commits = 0
        #: per lane: jobs queued so far, and jobs committed so far (a commit takes all queued at its start)
        self._queued: dict[int, int] = {}
        self._committed: dict[int, int] = {}
        self._barriers: list[tuple[dict[int, int], asyncio.Future[None]]] = []

    def __bool__(self) -> bool:
        return bool(self._tasks or self._stages)

    async def add(self, job: Job) -> None:
        """Queue a batch's share of a partition; waits only while its lane holds too much."""
        if self._error is not None:
            await self.settle()  # raises it
        if not job.out and not job.changes and not job.processed:
            return
        lane = self._lane(job.partition)
        pending = self._pending.setdefault(lane, [])
        pending.append(job)
        self._queued[lane] = self._queued.get(lane, 0) + 1
        task = self._tasks.get(lane)
        if task is None:
            self._tasks[lane] = asyncio.ensure_future(self._run(lane))
        elif sum(len(j.out) for j in pending) > self.max_pending:
            await asyncio.shield(task)  # the broker is behind: let this lane catch up

    async def _run(self, lane: int) -> None:
        try:
            while self._pending.get(lane) and self._error is None:
                upto = self._queued[lane]
                stage = await self._commit(self._pending.pop(lane))
                self.commits += 1
                previous = self._stages.get(lane)
                if stage is None and previous is None:
                    self._durable(lane, upto)
                else:  # durable once its second stage (if any) and the lane's earlier ones are through
                    self._stages[lane] = asyncio.ensure_future(self._second(lane, upto, previous, stage))
        except Exception as exc:  # raised to the agent by the next add() or settle()
            self._error = self._error or exc
        finally:
            self._tasks.pop(lane, None)
            if self._error is not None:  # this lane's or another's: what is left in the lane will not commit
                self._failed(lane, self._error)

    async def _second(self, lane: int, upto: int, previous: asyncio.Future[None] | None,
                      stage: Awaitable[None] | None) -> None:
        """A commit's second stage, after the lane's previous one: once one failed, none after it runs
        (nothing after a failed stage may be stored); the failure goes to the agent."""
        try:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            if self._error is not None:  # an earlier stage or commit failed: this one is void
                if asyncio.iscoroutine(stage):
                    stage.close()
                return
            if stage is not None:
                await stage
            self._durable(lane, upto)
        except Exception as exc:
            self._failed(lane, exc)
        finally:
            if self._stages.get(lane) is asyncio.current_task():
                del self._stages[lane]

    def _failed(self, lane: int, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._pending.pop(lane, None)
        self._committed[lane] = self._queued.get(lane, 0)  # dropped: done, as failed
        self._release(exc)

    def _durable(self, lane: int, upto: int) -> None:
        self._committed[lane] = max(self._committed.get(lane, 0), upto)
        self._release()

    def barrier(self) -> asyncio.Future[None] | None:
        """A future done when every job queued so far is committed (None: nothing is in flight), or
        failed with the error of a commit that failed meanwhile."""
        targets = {lane: n for lane, n in self._queued.items() if self._committed.get(lane, 0) < n}
        if not targets and self._error is None:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._barriers.append((targets, future))
        self._release(self._error)
        return future

    def _release(self, error: BaseException | None = None) -> None:
        """Resolve the barriers whose jobs are committed; with ``error``, fail every one left (what
        they wait for will not commit: the agent restores from the table)."""
        waiting = []
        for targets, future in self._barriers:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
                future.exception()  # retrieved: a barrier nobody awaits any more is no unhandled error
            elif all(self._committed.get(lane, 0) >= n for lane, n in targets.items()):
                future.set_result(None)
            else:
                waiting.append((targets, future))
        self._barriers = waiting

    async def settle(self) -> None:
        """Until every lane's queued work is committed; raises a commit's error (the caller then restores
        its state from the table)."""
        while self._tasks or self._stages:
            await asyncio.gather(*self._tasks.values(), *self._stages.values(), return_exceptions=True)
        error, self._error = self._error, None
        if error is not None:
            raise error


def merged(jobs: list[Job]) -> tuple[list[Output], dict[int, int], Changes]:
    """The jobs' outputs, last processed offsets and table records, in order."""
    out = [o for job in jobs for o in job.out]
    processed: dict[int, int] = {}
    changes: Changes = {}
    for job in jobs:
        processed.update(job.processed)
        for p, records in job.changes.items():
            changes.setdefault(p, []).extend(records)
    return out, processed, changes

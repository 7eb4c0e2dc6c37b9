"""Group commit per raw partition: the book agent never waits for the broker between batches.

The agent processes a batch, hands each partition's outputs and table records here and takes the next
batch. Each partition has at most one commit in flight (a transaction under exactly-once, else outputs
then changelog); what arrives meanwhile is merged into that partition's next commit, in order. So the
deltas are computed as soon as their frames arrive, and a commit carries whatever piled up while the
previous one was with the broker: small when the load is light, large under load.

Under exactly-once the input is acked before its commit: after a crash, each partition resumes from
the watermark stored with its last commit (the table), and the records after it are read again
(``agents/pipeline.py``). At least once (the embedded broker), the pipeline settles each batch's
commits before the ack, so the group offset never runs ahead of the table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from models.processor import Output

Changes = dict[int, list[Any]]
Commit = Callable[[int, list[Output], dict[int, int], Changes], Awaitable[None]]


class PartitionCommits:
    def __init__(self, commit: Commit, max_pending: int = 50_000) -> None:
        self._commit = commit
        #: outputs a partition may hold uncommitted before the agent waits for its commit
        self.max_pending = max_pending
        self._pending: dict[int, list[tuple[list[Output], dict[int, int], Changes]]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._error: BaseException | None = None
        self.commits = 0

    def __bool__(self) -> bool:
        return bool(self._tasks)

    async def add(self, partition: int, out: list[Output], processed: dict[int, int], changes: Changes) -> None:
        """Queue a batch's share of ``partition``; waits only while the partition holds too much."""
        if self._error is not None:
            await self.settle()  # raises it
        if not out and not changes and not processed:
            return
        pending = self._pending.setdefault(partition, [])
        pending.append((out, processed, changes))
        task = self._tasks.get(partition)
        if task is None:
            self._tasks[partition] = asyncio.ensure_future(self._run(partition))
        elif sum(len(job[0]) for job in pending) > self.max_pending:
            await asyncio.shield(task)  # the broker is behind: let this partition catch up

    async def _run(self, partition: int) -> None:
        try:
            while self._pending.get(partition):
                jobs = self._pending.pop(partition)
                out = [o for job in jobs for o in job[0]]
                processed: dict[int, int] = {}
                changes: Changes = {}
                for _, done, change in jobs:
                    processed.update(done)
                    for p, records in change.items():
                        changes.setdefault(p, []).extend(records)
                await self._commit(partition, out, processed, changes)
                self.commits += 1
        except Exception as exc:  # raised to the agent by the next add() or settle()
            self._error = exc
            self._pending.pop(partition, None)
        finally:
            self._tasks.pop(partition, None)

    async def settle(self) -> None:
        """Until every partition's queued work is committed; raises a commit's error (the caller then
        restores its state from the table)."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        error, self._error = self._error, None
        if error is not None:
            raise error

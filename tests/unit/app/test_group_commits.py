"""The group commit's barrier: at least once, a batch is acked when its commits are durable, while the
agent goes on with the next batch (``agents/commits.py``)."""

from __future__ import annotations

import asyncio

import pytest

from agents.commits import GroupCommits, Job, own_lane

pytestmark = pytest.mark.unit


class Broker:
    """A commit function whose commits end when the test says (each one a future)."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[int], asyncio.Future[None]]] = []
        self.called = asyncio.Event()

    async def commit(self, jobs: list[Job]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.calls.append(([j.partition for j in jobs], done))
        self.called.set()
        await done

    async def next_call(self) -> asyncio.Future[None]:
        while not any(not done.done() for _, done in self.calls):
            self.called.clear()
            await self.called.wait()
        return next(done for _, done in self.calls if not done.done())


def job(partition: int, offset: int) -> Job:
    return Job(partition, [], {partition: offset}, {})


async def test_a_barrier_waits_for_the_commits_of_what_was_queued_before_it_only() -> None:
    broker = Broker()
    commits = GroupCommits(broker.commit, lane=own_lane)
    assert commits.barrier() is None  # nothing in flight: the batch is durable already
    await commits.add(job(0, 1))
    await commits.add(job(1, 1))
    first = commits.barrier()
    assert first is not None
    while len(broker.calls) < 2:  # both lanes' commits are in flight
        await broker.next_call()
        await asyncio.sleep(0)
    await commits.add(job(0, 2))  # the agent goes on meanwhile
    second = commits.barrier()
    assert second is not None
    (await broker.next_call()).set_result(None)  # partition 0's first commit
    await asyncio.sleep(0)
    assert not first.done()  # partition 1's commit is still in flight
    (await broker.next_call()).set_result(None)  # partition 1's
    await first
    assert not second.done()  # partition 0's second job is in the lane's next commit
    (await broker.next_call()).set_result(None)
    await second
    await commits.settle()
    assert commits.barrier() is None


async def test_a_failed_commit_fails_the_barriers_waiting_for_it_and_later_ones_still_resolve() -> None:
    broker = Broker()
    commits = GroupCommits(broker.commit, lane=own_lane)
    await commits.add(job(0, 1))
    failed = commits.barrier()
    assert failed is not None
    (await broker.next_call()).set_exception(RuntimeError("broker down"))
    with pytest.raises(RuntimeError, match="broker down"):
        await failed
    with pytest.raises(RuntimeError, match="broker down"):
        await commits.settle()  # the agent restores its state from the table
    await commits.add(job(0, 1))  # the batch again
    again = commits.barrier()
    assert again is not None
    (await broker.next_call()).set_result(None)
    await again

"""The group commit's barrier: at least once, a batch is acked when its commits are durable, while the
agent goes on with the next batch (``agents/commits.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

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


async def test_a_lane_sends_its_next_outputs_while_its_previous_changelog_is_in_flight() -> None:
    """At least once a commit has two stages (outputs, then changelog and RocksDB): the lane's next
    first stage does not wait for the previous second stage, and the second stages keep their order."""
    broker = Broker()
    stored: list[int] = []
    second: dict[int, asyncio.Future[None]] = {}

    async def store(offset: int) -> None:
        second[offset] = asyncio.get_running_loop().create_future()
        await second[offset]
        stored.append(offset)

    async def commit(jobs: list[Job]) -> Awaitable[None]:
        await broker.commit(jobs)  # the outputs
        return store(jobs[-1].processed[0])

    commits = GroupCommits(commit, lane=own_lane)
    await commits.add(job(0, 1))
    first = commits.barrier()
    (await broker.next_call()).set_result(None)  # outputs of 1 acked; their changelog is in flight
    await commits.add(job(0, 2))
    later = commits.barrier()
    outputs_2 = await broker.next_call()  # sent before the changelog of 1 is stored
    assert first is not None and later is not None and not first.done()
    outputs_2.set_result(None)
    while 1 not in second:
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert 2 not in second and not later.done()  # the changelog of 2 waits for that of 1
    second[1].set_result(None)
    await first
    while 2 not in second:
        await asyncio.sleep(0)
    assert not later.done()
    second[2].set_result(None)
    await later
    assert stored == [1, 2]


async def test_after_a_failed_second_stage_no_later_one_is_stored() -> None:
    second: dict[int, asyncio.Future[None]] = {}
    stored: list[int] = []

    async def store(offset: int) -> None:
        second[offset] = asyncio.get_running_loop().create_future()
        await second[offset]
        stored.append(offset)

    async def commit(jobs: list[Job]) -> Awaitable[None]:
        return store(jobs[-1].processed[0])

    commits = GroupCommits(commit, lane=own_lane)
    await commits.add(job(0, 1))
    while 1 not in second:
        await asyncio.sleep(0)
    await commits.add(job(0, 2))
    barrier = commits.barrier()
    assert barrier is not None
    second[1].set_exception(RuntimeError("changelog write failed"))
    with pytest.raises(RuntimeError, match="changelog write failed"):
        await barrier
    with pytest.raises(RuntimeError, match="changelog write failed"):
        await commits.settle()
    assert stored == [] and 2 not in second  # the second commit's changelog never started

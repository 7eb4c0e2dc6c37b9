"""The live-ingest election: a consumer group on the one-partition topic ``kraken.ingest.lock``; the
member assigned its partition is the live ingest.

* The lock stays where a stream runs (:class:`LockAssignor`): it goes to the member that streams under
  the newest lock generation, so a candidate that joins, or an ingest woken from a pause, does not take
  it from the live one. (aiokafka's assignors give it to the lowest member id: a handover, with fresh
  Kraken connections and snapshots, at any rebalance.)
* Each takeover is recorded, before the first frame, as the committed offset metadata of the lock
  partition (``"<generation> <instance>"``); the group coordinator takes a commit from the current
  holder only. An ingest that lost its group session (a pause, a broker blip) and wins the lock again
  reads it back: still its own, so nobody streamed in between and its Kraken connections carry on;
  another's, and it starts over with fresh connections (a fresh snapshot for every pair).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata
from aiokafka.protocol.group import JoinGroupRequest
from aiokafka.structs import OffsetAndMetadata

from app.security import kafka_client_config

if TYPE_CHECKING:
    from ingest.service import Ingest

log = logging.getLogger("krakenflow.ingest")

#: the member id aiokafka falls back to when the group coordinator no longer knows the member
UNKNOWN_MEMBER_ID = JoinGroupRequest.UNKNOWN_MEMBER_ID

#: how long a commit or a read of the takeover record may take (the coordinator away: it is in doubt);
#: short, as the group sends no heartbeat while its rebalance listener runs
RECORD_TIMEOUT = 2.0


def claim(metadata: ConsumerProtocolMemberMetadata) -> int:
    """The lock generation a member streams under (-1: none) from its join metadata."""
    try:
        value = orjson.loads(metadata.user_data or b"{}").get("streaming", -1)
    except (orjson.JSONDecodeError, AttributeError):
        return -1
    return value if isinstance(value, int) else -1


class LockAssignor(AbstractPartitionAssignor):
    """The lock to the member streaming under the newest generation; if none streams, to the lowest
    member id (as aiokafka's round robin would)."""

    name = "krakenflow-ingest-lock"
    version = 0

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        streaming = self.ingest.lock_generation if self.ingest.active.is_set() else -1
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), orjson.dumps({"streaming": streaming}))

    def assign(self, cluster: ClusterMetadata,
               members: Mapping[str, ConsumerProtocolMemberMetadata]) -> dict[str, ConsumerProtocolMemberAssignment]:
        newest = max(claim(m) for m in members.values())
        holder = min(member for member, m in members.items() if claim(m) == newest)
        topics = sorted({t for m in members.values() for t in m.subscription})
        granted = [(t, sorted(cluster.partitions_for_topic(t) or ())) for t in topics
                   if t in members[holder].subscription]
        return {member: ConsumerProtocolMemberAssignment(self.version, granted if member == holder else [], b"")
                for member in members}

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        return None


def lock_consumer(ingest: Ingest, session_timeout: float, heartbeat_interval: float, instance: str) -> AIOKafkaConsumer:
    """The candidate's member of the lock group (not started, not subscribed yet).

    One assignor only: aiokafka (0.14, aio-libs/aiokafka#1168) sends a JoinGroup per listed assignor,
    the second with other protocols than the first, which starts a new rebalance. Two candidates that
    join together then keep restarting each other's rebalance, and nobody gets the lock (seen for a
    minute and more)."""
    s = ingest.settings
    return AIOKafkaConsumer(
        bootstrap_servers=s.kafka_bootstrap, group_id=f"{s.app_id}-ingest", enable_auto_commit=False,
        session_timeout_ms=int(session_timeout * 1000), heartbeat_interval_ms=int(heartbeat_interval * 1000),
        client_id=f"ingest-{instance}", partition_assignment_strategy=(LockAssignor(ingest),),
        **kafka_client_config(s),
    )


class Election(ConsumerRebalanceListener):  # type: ignore[misc]
    """One campaign's rebalance listener: starts, keeps, holds back or stops the ingest's stream."""

    def __init__(self, ingest: Ingest, lock: AIOKafkaConsumer, partition: TopicPartition, instance: str) -> None:
        self.ingest = ingest
        self.lock = lock
        self.partition = partition
        self.instance = instance
        self.member: str | None = None  # our member id in the group when we last got the lock
        self.generation = -1  # the group generation of our last assignment
        self.holds = False  # the lock partition is assigned to us
        self.stamp: str | None = None  # our takeover record, once committed
        self.open = True  # False once the campaign ends: an assignment then is not acted on

    # Revocation happens on every rebalance, also when the holder keeps the lock: acting only on the
    # new assignment avoids reconnecting to Kraken each time a worker joins.
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.holds = False
        if getattr(self.lock._coordinator, "member_id", None) == UNKNOWN_MEMBER_ID:
            # the group no longer knows us (our session expired: a pause, a broker blip), so another
            # candidate may be given the lock in this rebalance: nothing more goes out until it ends
            self.ingest.suspend("the ingest group no longer knows this process (its session expired)")

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if not self.open:
            return
        coordinator = self.lock._coordinator
        if not assigned:
            await self.ingest.release_lock()
            return
        member = getattr(coordinator, "member_id", None)
        # the group generation grows with every rebalance: frames carry the one this ingest holds
        self.generation = int(getattr(coordinator, "generation", -1))
        session_lost = member != self.member
        self.member, self.holds = member, True
        log.info("ingest lock held in generation %d", self.generation)
        await self.ingest.hold_lock(self, session_lost)

    async def record_takeover(self) -> bool:
        """Commit ``"<generation> <instance>"`` as the lock partition's takeover record (only the current
        holder can); False if it did not go through (the stream then does not start yet)."""
        stamp = f"{self.generation} {self.instance}"
        try:
            await asyncio.wait_for(self.lock.commit({self.partition: OffsetAndMetadata(0, stamp)}), RECORD_TIMEOUT)
        except Exception as exc:  # a rebalance, the coordinator away: retried while we hold the lock
            log.warning("the ingest takeover could not be recorded (%s: %s); not streaming yet", type(exc).__name__, exc)
            return False
        self.stamp = stamp
        return True

    async def still_ours(self) -> bool:
        """True when the lock partition's takeover record is still ours: no other ingest took the lock
        (and streamed) since this one did."""
        if self.stamp is None:
            return False
        try:
            offsets: dict[TopicPartition, Any] = await asyncio.wait_for(
                self.lock._coordinator.fetch_committed_offsets([self.partition]), RECORD_TIMEOUT)
        except Exception as exc:  # unknown counts as not ours: the safe side is a fresh start
            log.warning("the ingest takeover record could not be read (%s: %s)", type(exc).__name__, exc)
            return False
        record = offsets.get(self.partition)
        return record is not None and record.metadata == self.stamp

    async def confirm(self) -> bool:
        """True when the group coordinator still takes our commit: we are a member of its current
        generation, the one in which we hold the lock (a pause shorter than the session timeout)."""
        if self.stamp is None or not self.holds:
            return False
        try:
            await asyncio.wait_for(self.lock.commit({self.partition: OffsetAndMetadata(0, self.stamp)}), RECORD_TIMEOUT)
        except Exception:  # not confirmed: the rebalance that follows decides
            return False
        return True

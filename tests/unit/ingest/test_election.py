"""The ingest lock stays where a stream runs: the assignor's choice from the members' join metadata."""

from __future__ import annotations

import pytest
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.protocol import ConsumerProtocol, ConsumerProtocolMemberMetadata
from aiokafka.protocol.metadata import MetadataResponse_v0

from app.settings import Settings
from ingest.election import LockAssignor, claim
from ingest.service import Ingest

pytestmark = pytest.mark.unit

LOCK = "kf.ingest.lock"


def cluster() -> ClusterMetadata:
    metadata = ClusterMetadata()
    metadata.update_metadata(MetadataResponse_v0(brokers=[(1, "127.0.0.1", 9092)],
                                                 topics=[(0, LOCK, [(0, 0, 1, [1], [1])])]))
    return metadata


def joined(streaming: int | None) -> ConsumerProtocolMemberMetadata:
    """A member's join metadata as the group leader decodes it; ``streaming``: its lock generation
    while it streams, None for a standby."""
    ingest = Ingest(Settings())
    if streaming is not None:
        ingest.lock_generation = streaming
        ingest.active.set()
    encoded = LockAssignor(ingest).metadata([LOCK]).encode()
    return ConsumerProtocol.METADATA.decode(encoded)


def holder(members: dict[str, ConsumerProtocolMemberMetadata]) -> list[str]:
    assignment = LockAssignor(Ingest(Settings())).assign(cluster(), members)
    return [m for m, a in assignment.items() if a.partitions()]


def test_the_lock_stays_with_the_member_streaming_under_the_newest_generation() -> None:
    # a woken ingest (generation 3) and its replacement (5) both stream; a candidate joins
    members = {"ingest-a": joined(3), "ingest-b": joined(5), "ingest-0": joined(None)}
    assert holder(members) == ["ingest-b"]
    assert claim(members["ingest-0"]) == -1


def test_with_nobody_streaming_the_lowest_member_id_gets_the_lock() -> None:
    members = {"ingest-b": joined(None), "ingest-a": joined(None)}
    assert holder(members) == ["ingest-a"]


def test_metadata_without_a_claim_counts_as_a_standby() -> None:
    plain = ConsumerProtocolMemberMetadata(0, [LOCK], b"")  # no user data at all
    assert claim(plain) == -1
    assert holder({"ingest-a": plain, "ingest-b": joined(2)}) == ["ingest-b"]

"""Connection rotation, make before break: a Kraken connection is replaced by a fresh one every
``rotate_after`` seconds without a moment in which a pair has no live subscription.

The new connection subscribes every pair while the old one keeps publishing. Its frames for a pair are
held back until that pair's book snapshot arrives. Then, in one step, the pair is handed over: the old
connection's frames for it are dropped from then on (the new one carries the same market), and the
new connection's held frames (its ack, the snapshot, what followed) are published, in order. The book
agent sees the snapshot as the start of a new epoch of a book that never stopped. Once every pair is
handed over, the old connection closes. A pair whose snapshot does not come within the timeout is
handed over anyway, and the new connection resyncs it (a fresh snapshot).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ingest.connection import FrameSink

if TYPE_CHECKING:
    from ingest.service import Ingest

log = logging.getLogger("krakenflow.ingest")


def is_book_snapshot(text: str) -> bool:
    return text.startswith('{"channel":"book","type":"snapshot"')


class Handover:
    """The sinks of an old and a new connection of the same pairs while one replaces the other."""

    def __init__(self, pairs: tuple[str, ...], publish: FrameSink) -> None:
        self.pairs = set(pairs)
        self.publish = publish
        self.switched: set[str] = set()
        self.held: dict[str, list[tuple[str, int, str, int, str | None]]] = {p: [] for p in pairs}
        self.dropped = 0  # frames of the old connection for pairs already handed over
        self.complete = asyncio.Event()

    async def old_sink(self, text: str, recv_ns: int, connection_id: str, seq: int, key: str | None) -> None:
        if key in self.switched:
            self.dropped += 1  # the new connection carries this pair now
            return
        await self.publish(text, recv_ns, connection_id, seq, key)

    async def new_sink(self, text: str, recv_ns: int, connection_id: str, seq: int, key: str | None) -> None:
        if key is None or key not in self.pairs or key in self.switched:
            await self.publish(text, recv_ns, connection_id, seq, key)
            return
        self.held[key].append((text, recv_ns, connection_id, seq, key))
        if is_book_snapshot(text):
            await self.hand_over(key)

    async def hand_over(self, pair: str) -> None:
        """From now on the new connection carries ``pair``: its held frames are published, in order."""
        self.switched.add(pair)  # first: an old frame arriving while these are published is dropped
        held, self.held[pair] = self.held[pair], []
        for frame in held:
            await self.publish(*frame)
        if self.switched == self.pairs:
            self.complete.set()


async def stop_task(task: asyncio.Task[Any]) -> None:
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass


async def rotate_forever(ingest: Ingest, n: int) -> None:
    """Replace connection ``n`` every ``rotate_after`` seconds, make before break."""
    s = ingest.settings
    rotation = 0
    while True:
        await asyncio.sleep(s.rotate_after)  # the rotation schedule
        old = ingest.connections[n]
        if not old.connected.is_set():
            continue  # it is reconnecting: that gives a fresh connection anyway
        rotation += 1
        await rotate(ingest, n, rotation)


async def rotate(ingest: Ingest, n: int, rotation: int) -> None:
    s = ingest.settings
    old = ingest.connections[n]
    publish = ingest._publish
    handover = Handover(old.pairs, publish)
    new = ingest.make_connection(n, old.pairs, handover.new_sink, rotation)
    ingest.handovers[n] = (handover, new)
    old.sink = handover.old_sink  # a connection reads its sink for every frame: this redirects it
    new_task = ingest.spawn(f"kraken-{n}", new.run)
    log.info("rotating connection %s: %s subscribes %d pairs first", old.connection_id, new.connection_id,
             len(old.pairs))
    try:
        await asyncio.wait_for(handover.complete.wait(), s.rotate_timeout)
    except asyncio.CancelledError:  # the ingest stops mid-rotation: the old connection is the one it knows
        old.sink = publish
        del ingest.handovers[n]
        await stop_task(new_task)
        raise
    except TimeoutError:
        missing = sorted(handover.pairs - handover.switched)
        log.warning("rotation of %s: no book snapshot for %s within %.0f s on %s; handing them over with a resync",
                    old.connection_id, ", ".join(missing), s.rotate_timeout, new.connection_id)
        for pair in missing:
            await handover.hand_over(pair)
            await new.resync(pair, "connection rotation: no snapshot on the new connection")
    new.sink = publish  # every pair is the new connection's now
    old_task = ingest.connection_tasks[n]
    ingest.connections[n], ingest.connection_tasks[n] = new, new_task
    del ingest.handovers[n]
    await stop_task(old_task)  # closes the old connection
    ingest.stats.rotations += 1
    log.info("rotated connection %s -> %s: %d pairs handed over, %d redundant frames of the old one dropped",
             old.connection_id, new.connection_id, len(handover.pairs), handover.dropped)

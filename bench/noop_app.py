"""A Faust app whose agent does nothing: the per-event ceiling the book agent is compared with.

Same broker settings and topic as the real worker; it counts events and, at ``BENCH_EXPECT`` events,
writes ``{"first": t0, "last": t1, "events": n}`` (monotonic-free wall clock ns) to ``BENCH_OUT``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import faust
import orjson

app = faust.App(
    os.environ["BENCH_APP_ID"], broker=os.environ["KRAKENFLOW_BROKER"], store="memory://",
    web_enabled=False, key_serializer="raw", value_serializer="raw", broker_session_timeout=10.0,
    broker_heartbeat_interval=1.0, producer_max_batch_size=1, topic_partitions=int(os.environ["BENCH_PARTITIONS"]),
)
topic = app.topic("kraken.raw", key_type=bytes, value_type=bytes)
expect = int(os.environ["BENCH_EXPECT"])
seen = {"events": 0, "first": 0, "last": 0}


@app.agent(topic)
async def noop(stream: Any) -> None:
    async for _ in stream.events():
        n = seen["events"] = seen["events"] + 1
        if n == 1:
            seen["first"] = time.time_ns()
        if n == expect:
            seen["last"] = time.time_ns()
            partial = os.environ["BENCH_OUT"] + ".partial"
            with open(partial, "wb") as out:
                out.write(orjson.dumps(seen))
            os.replace(partial, os.environ["BENCH_OUT"])

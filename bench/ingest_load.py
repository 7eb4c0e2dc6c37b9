"""Ingest throughput: WebSocket -> ``kraken.raw`` frames/s of one ``krakenflow ingest``, and its RSS.

The simulator's replay server sends a pre-rendered session (instruments, acks, snapshots, then
``--ingest-frames`` book updates over the pairs) as fast as the socket takes it, once the ingest
subscribes; the rate is frames landed in ``kraken.raw`` (end offsets) over the time from the first to
the last. RSS of the ingest is sampled as the frames land: growth from 10 % to the end.

    python bench/ingest_load.py [--broker kafka|embedded] [--frames 300000] [--pairs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import BIN, Market, assigned, cluster, rss_mb, write_session  # noqa: E402
from tests.processes import free_port  # noqa: E402


def capture(path: Path, market: Market, frames: int) -> int:
    """Write the replayed session; returns its frame count."""
    return write_session(path, market.start() + market.updates(frames))


async def landed(bootstrap: str, topic: str, total: int, pid: int, timeout: float = 300) -> dict[str, float]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = await assigned(consumer)
        first_at = None
        warm = 0.0
        deadline = time.monotonic() + timeout
        while True:
            count = sum((await consumer.end_offsets(tps)).values())
            now = time.monotonic()
            if count and first_at is None:
                first_at, first_count = now, count
            if warm == 0.0 and count >= total // 10:
                warm = rss_mb(pid)
            if count >= total:
                end = rss_mb(pid)
                assert first_at is not None
                return {"rate": (count - first_count) / max(now - first_at, 1e-3), "warm": warm, "end": end,
                        "rss_growth": (end - warm) / warm * 100 if warm else 0.0}
            if now > deadline:
                raise SystemExit(f"only {count} of {total} frames reached kraken.raw within {timeout:.0f} s")
            await asyncio.sleep(0.05)  # polling the broker's end offsets
    finally:
        await consumer.stop()


def ingest_throughput(kind: str, tmp: Path, pairs: int, depth: int, frames: int) -> dict[str, float]:
    market = Market(pairs, depth, 5)
    path = tmp / "ingest-session.jsonl"
    total = capture(path, market, frames)
    broker, env, settings = cluster(kind, tmp, "ingest", "at_least_once", market.symbols, depth)
    port = free_port()
    procs = [subprocess.Popen([str(BIN / "krakenflow"), "sim", "--port", str(port), "--replay", str(path),
                               "--speed", "0"], cwd=ROOT, env=env, stdout=open(tmp / "ingest-sim.log", "ab"),  # noqa: SIM115
                              stderr=subprocess.STDOUT)]
    try:
        ingest_env = dict(env, KRAKENFLOW_KRAKEN_URL=f"ws://127.0.0.1:{port}/v2", KRAKENFLOW_CHANNELS="book",
                          KRAKENFLOW_INGEST="auto", KRAKENFLOW_INGEST_METRICS_PORT=str(free_port()))
        procs.append(subprocess.Popen([str(BIN / "krakenflow"), "ingest"], cwd=ROOT, env=ingest_env,
                                      stdout=open(tmp / "ingest.log", "ab"), stderr=subprocess.STDOUT))  # noqa: SIM115
        result = asyncio.run(landed(settings.kafka_bootstrap, settings.raw_topic, total, procs[-1].pid))
        print(f"ingest ({kind}): {result['rate']:,.0f} frames/s WebSocket -> kraken.raw; RSS {result['warm']:.0f} MB "
              f"at 10 %, {result['end']:.0f} MB at the end ({result['rss_growth']:+.1f} %)", flush=True)
        return result
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait()
        broker.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=("kafka", "embedded"), default="kafka")
    parser.add_argument("--frames", type=int, default=300_000)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--depth", type=int, default=25)
    args = parser.parse_args()
    result = ingest_throughput(args.broker, Path(tempfile.mkdtemp(prefix="kf-ingest-")), args.pairs, args.depth,
                               args.frames)
    print(f"RESULT broker={args.broker} ingest_frames_per_s={result['rate']:.0f} "
          f"ingest_rss_growth_pct={result['rss_growth']:.1f}")


if __name__ == "__main__":
    main()

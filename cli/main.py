"""The ``krakenflow`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from app.topics import OUTPUTS

if TYPE_CHECKING:
    from app.settings import Settings
    from ingest.service import Ingest


def _verify(args: argparse.Namespace) -> int:
    from app.settings import Settings
    from cli.verify import as_json, exit_code, render, summary, verify_file
    from models import native

    native.use(Settings.from_env().native)  # KRAKENFLOW_NATIVE=0: the pure-Python engine, as in the worker
    reports = [verify_file(path) for path in args.captures]
    if args.json:
        sys.stdout.write(orjson.dumps(as_json(reports), option=orjson.OPT_INDENT_2).decode() + "\n")
        for report in reports:
            if report.error:
                print(report.error, file=sys.stderr)
    else:
        for report in reports:
            print("\n".join(render(report)))
        print(f"{summary(reports)} ({'native' if native.enabled else 'Python'} book engine)")
    return exit_code(reports)


def _sim(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from sim.server import SimSettings, Simulator

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = SimSettings(
        host=args.host, port=args.port, pairs=args.pairs, seed=args.seed, rate=args.rate,
        pair_rate=args.pair_rate, replay=args.replay, speed=args.speed,
    )

    async def serve() -> None:
        async with Simulator(settings) as sim:
            mode = f"replaying {args.replay}" if args.replay else f"{len(sim.specs)} pairs, seed {args.seed}"
            print(f"krakenflow simulator on {sim.url} ({mode}); control API at "
                  f"http://{args.host}:{sim.port}/control/state", flush=True)
            await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


def _record(args: argparse.Namespace) -> int:
    import asyncio

    from cli.record import record

    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    channels = tuple(c.strip() for c in args.channels.split(",") if c.strip())
    frames = asyncio.run(record(args.url, symbols, args.depth, args.seconds, args.output, channels))
    print(f"recorded {frames} frames from {args.url} to {args.output}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from cli.run import run

    return run()


def _ingest(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from app.settings import Settings
    from ingest.service import Ingest

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(levelname)s] %(name)s: %(message)s")
    settings = Settings.from_env()
    asyncio.run(_run_ingest(Ingest(settings), settings))
    return 0


async def _run_ingest(ingest: Ingest, settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly: the producer flushes what it holds and the lock
    consumer leaves its group, so a standby takes over at once rather than after the session timeout.
    Bounded by ``stop_timeout`` (a gone broker would hang the flush)."""
    import asyncio
    import logging
    import signal

    from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

    from app.health import start_ingest_server
    from app.metrics import IngestCollector
    from app.shutdown import exit_after

    log = logging.getLogger("krakenflow.ingest")
    main = asyncio.current_task()
    assert main is not None
    registry = CollectorRegistry()
    registry.register(IngestCollector(ingest))
    ProcessCollector(registry=registry)  # process_resident_memory_bytes and friends, as before
    PlatformCollector(registry=registry)
    runner = await start_ingest_server(ingest, settings.web_host, settings.ingest_metrics_port, registry)
    log.info("metrics, /healthz and /readyz at http://%s:%d/", settings.web_host, settings.ingest_metrics_port)

    def stop(signum: int) -> None:
        log.info("%s: stopping (flushing frames, leaving the ingest group)", signal.Signals(signum).name)
        exit_after(settings.stop_timeout, "the ingest")
        main.cancel()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    try:
        await ingest.run()
    except asyncio.CancelledError:
        stats = ingest.stats
        log.info("ingest stopped: %d frames delivered, %d not delivered, %d in flight", stats.sent,
                 stats.dropped, stats.in_flight)
    finally:
        await runner.cleanup()


def _replay(args: argparse.Namespace) -> int:
    import asyncio

    from app.settings import Settings
    from cli.replay import replay

    settings = Settings.from_env()
    sent = asyncio.run(replay(settings, args.captures, args.rate))
    print(f"published {sent} frames to {settings.raw_topic} on {settings.broker}")
    return 0


def _tail(args: argparse.Namespace) -> int:
    from app.settings import Settings
    from cli.tail import run

    return run(Settings.from_env(), args.topic, args.symbol, args.from_beginning, args.count)


def _books(args: argparse.Namespace) -> int:
    from app.settings import Settings
    from cli.books import run

    if args.depth < 1:
        print(f"--depth must be at least 1, got {args.depth}", file=sys.stderr)
        return 2
    return run(Settings.from_env(), args.symbols, args.depth, args.books_url, fast=args.fast)


def _broker(args: argparse.Namespace) -> int:
    import time

    if args.kafka:
        from broker.kafka import run_kafka

        return run_kafka(args.nodes, args.data, args.port)
    from broker.embedded import start_broker

    proc = start_broker(args.host, args.port)
    print(f"embedded broker on {args.host}:{args.port} (memory only); Ctrl-C stops it", flush=True)
    try:
        while proc.poll() is None:
            time.sleep(1)  # supervising the broker process
    except KeyboardInterrupt:
        proc.terminate()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="krakenflow", description="Kraken v2 order books on Kafka.")
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser(
        "verify", help="verify every book checksum in capture files",
        description="Replay Kraken v2 capture files (JSON Lines) through the book engine and verify "
        "every checksum. Exit 0 when all verify, 1 when any fails, 2 when a file cannot be read.",
    )
    verify.add_argument("captures", nargs="+", metavar="CAPTURE")
    verify.add_argument("--json", action="store_true", help="print per-file, per-pair counts as JSON")
    verify.set_defaults(func=_verify)

    sim = sub.add_parser(
        "sim", help="run the Kraken-compatible exchange simulator",
        description="A local exchange speaking Kraken's public WebSocket v2 (book, trade, ticker, ohlc, "
        "instrument), with fault controls at /control/<action> on the same port.",
    )
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument("--pairs", type=int, default=60, help="number of pairs in the market (default 60)")
    sim.add_argument("--seed", type=int, default=1, help="random seed; the same seed gives the same market")
    sim.add_argument("--rate", type=float, default=50.0,
                     help="events per second across subscribed pairs (0: as fast as possible)")
    sim.add_argument("--pair-rate", type=float, default=None,
                     help="events per second for every subscribed pair instead of --rate (0: maximum)")
    sim.add_argument("--replay", type=Path, default=None, help="serve this capture file instead")
    sim.add_argument("--speed", type=float, default=1.0,
                     help="replay speed factor (1: original timing, 0: as fast as possible)")
    sim.set_defaults(func=_sim)

    sub.add_parser("run", help="the whole pipeline: broker, market (Kraken or simulator), ingest, worker"
                   ).set_defaults(func=_run)
    sub.add_parser("ingest", help="run an ingest candidate (one live ingest per cluster is elected)"
                   ).set_defaults(func=_ingest)
    rep = sub.add_parser("replay", help="publish capture files into kraken.raw as the ingest would")
    rep.add_argument("captures", nargs="+", type=Path, metavar="CAPTURE")
    rep.add_argument("--rate", type=float, default=0.0, help="frames per second (default: as fast as possible)")
    rep.set_defaults(func=_replay)
    tail = sub.add_parser("tail", help="follow an output topic, pretty-printed",
                          description="Follow a krakenflow topic one line per record: "
                          f"{', '.join(OUTPUTS)}.")
    tail.add_argument("topic", help="e.g. book.deltas or kraken.book.events")
    tail.add_argument("--symbol", help="only this pair (BTC-USD or BTC/USD)")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    tail.add_argument("--count", type=int, default=None, help="stop after this many records")
    tail.set_defaults(func=_tail)
    books = sub.add_parser("books", help="live order-book ladders in the terminal (from kraken.book.deltas)")
    books.add_argument("symbols", nargs="+", metavar="SYMBOL", help="BTC-USD or BTC/USD")
    books.add_argument("--depth", type=int, default=10, help="levels per side shown (default 10)")
    books.add_argument("--books-url", default=None,
                       help="a worker's web address to restore books from (default http://127.0.0.1:"
                            "$KRAKENFLOW_WEB_PORT; '' waits for the next exchange snapshot instead)")
    books.add_argument("--fast", action="store_true",
                       help="read deltas before their transaction commits (read_uncommitted): a commit cycle "
                            "sooner; a redo after an aborted commit is dropped as a repeat")
    books.set_defaults(func=_books)
    brk = sub.add_parser("broker", help="run a local broker: the embedded Tansu (memory only) or Apache Kafka",
                         description="Without --kafka: the embedded Kafka-protocol broker (Tansu, memory only). "
                         "With --kafka: Apache Kafka (KRaft) natively with Java 17+, its jars fetched from "
                         "Maven Central once; data persists in --data.")
    brk.add_argument("--host", default="127.0.0.1")
    brk.add_argument("--port", type=int, default=9092, help="first node's port (node i: port + i - 1)")
    brk.add_argument("--kafka", action="store_true", help="Apache Kafka instead of the embedded broker")
    brk.add_argument("--nodes", type=int, default=1, help="with --kafka: 1, or 3 for a replicated cluster")
    brk.add_argument("--data", type=Path, default=None, help="with --kafka: data directory (default var/kafka)")
    brk.set_defaults(func=_broker)

    rec = sub.add_parser("record", help="record a Kraken v2 connection to a capture file")
    rec.add_argument("output", type=Path, metavar="CAPTURE")
    rec.add_argument("--url", default="wss://ws.kraken.com/v2")
    rec.add_argument("--symbols", default="BTC/USD", help="comma-separated pairs, e.g. BTC/USD,ETH/USD")
    rec.add_argument("--depth", type=int, default=10, choices=(10, 25, 100, 500, 1000))
    rec.add_argument("--channels", default="book", help="comma-separated channels (book,trade,ticker)")
    rec.add_argument("--seconds", type=float, default=60.0)
    rec.set_defaults(func=_record)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

"""The ``krakenflow`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import orjson


def _verify(args: argparse.Namespace) -> int:
    from app.verify import as_json, exit_code, render, summary, verify_file

    reports = [verify_file(path) for path in args.captures]
    if args.json:
        sys.stdout.write(orjson.dumps(as_json(reports), option=orjson.OPT_INDENT_2).decode() + "\n")
        for report in reports:
            if report.error:
                print(report.error, file=sys.stderr)
    else:
        for report in reports:
            print("\n".join(render(report)))
        print(summary(reports))
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

    from app.record import record

    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    channels = tuple(c.strip() for c in args.channels.split(",") if c.strip())
    frames = asyncio.run(record(args.url, symbols, args.depth, args.seconds, args.output, channels))
    print(f"recorded {frames} frames from {args.url} to {args.output}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from app.run import run

    return run()


def _ingest(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from app.ingest import Ingest
    from app.settings import Settings

    from prometheus_client import REGISTRY, start_http_server

    from app.metrics import IngestCollector

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(levelname)s] %(name)s: %(message)s")
    settings = Settings.from_env()
    ingest = Ingest(settings)
    REGISTRY.register(IngestCollector(ingest))
    start_http_server(settings.ingest_metrics_port, addr=settings.web_host)  # its own thread
    logging.getLogger("krakenflow.ingest").info(
        "metrics at http://%s:%d/metrics", settings.web_host, settings.ingest_metrics_port)
    try:
        asyncio.run(ingest.run())
    except KeyboardInterrupt:
        pass
    return 0


def _replay(args: argparse.Namespace) -> int:
    import asyncio

    from app.replay import replay
    from app.settings import Settings

    settings = Settings.from_env()
    sent = asyncio.run(replay(settings, args.captures, args.rate))
    print(f"published {sent} frames to {settings.raw_topic} on {settings.broker}")
    return 0


def _tail(args: argparse.Namespace) -> int:
    from app.settings import Settings
    from app.tail import run

    return run(Settings.from_env(), args.topic, args.symbol, args.from_beginning, args.count)


def _broker(args: argparse.Namespace) -> int:
    import time

    from app.broker import start_broker

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
                          description="Follow a krakenflow topic (book.deltas, book.snapshots, book.events, "
                          "metrics, deadletter) one line per record.")
    tail.add_argument("topic", help="e.g. book.deltas or kraken.book.events")
    tail.add_argument("--symbol", help="only this pair (BTC-USD or BTC/USD)")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    tail.add_argument("--count", type=int, default=None, help="stop after this many records")
    tail.set_defaults(func=_tail)
    brk = sub.add_parser("broker", help="run the embedded Kafka-protocol broker (Tansu, memory only)")
    brk.add_argument("--host", default="127.0.0.1")
    brk.add_argument("--port", type=int, default=9092)
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

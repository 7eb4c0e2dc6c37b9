"""The ``krakenflow`` command line."""

from __future__ import annotations

import argparse
import sys
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

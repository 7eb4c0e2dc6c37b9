"""``krakenflow books SYMBOL... [--depth N]``: live ladders in the terminal, built on the book client.

Each symbol gets a panel: the asks above (best at the bottom), the bids below (best at the top), and a
header with the book's state, spread, ``epoch/seq``, checksum and the latency from the ingest's receive
to now. Books come from ``kraken.book.deltas`` through :mod:`krakenflow.client` (joined mid-stream and
restored from a worker's web view, so the first screen shows at once).
"""

from __future__ import annotations

import asyncio
import time

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from app.security import kafka_client_config
from app.settings import Settings
from krakenflow.client import BookClient, BookUpdate, ClientError
from models.symbols import normalize

STATE_STYLE = {"live": "bold green", "recovering": "yellow", "waiting": "yellow", "invalid": "bold red"}


def ladder(client: BookClient, symbol: str, depth: int, latency_ms: float | None) -> Panel:
    book = client.book(symbol)
    state = client.state(symbol)
    bids, asks = book.top(depth)
    table = Table(show_header=True, header_style="bold", expand=True, box=None, pad_edge=False)
    table.add_column("bid qty", justify="right")
    table.add_column("bid", justify="right", style="green")
    table.add_column("ask", justify="left", style="red")
    table.add_column("ask qty", justify="left")
    for n in range(depth):
        bid = bids[n] if n < len(bids) else ("", "")
        ask = asks[n] if n < len(asks) else ("", "")
        table.add_row(bid[1], bid[0], ask[0], ask[1])
    spread = book.spread
    checksum = "ok" if book.checksum_ok else ("FAILED" if book.checksum_ok is False else "-")
    header = Text.assemble(
        (f"{state}", STATE_STYLE.get(state, "")), "  spread ", (str(spread) if spread is not None else "-", "bold"),
        f"  seq {book.epoch}/{book.seq}  checksum ", (checksum, "green" if book.checksum_ok else "red"),
        f"  latency {latency_ms:.1f} ms" if latency_ms is not None else "  latency -")
    return Panel(Group(header, table), title=f"[bold]{symbol}[/]", title_align="left")


async def follow(settings: Settings, symbols: list[str], depth: int, books_url: str | None,
                 refresh: float = 4.0, console: Console | None = None, fast: bool = False) -> int:
    # --fast: deltas before their transaction commits (a redo after an abort is dropped as a repeat)
    committed = settings.profile.transactions and not fast
    client = BookClient(
        settings.kafka_bootstrap, symbols, topic=settings.topic("book.deltas"), books_url=books_url,
        isolation_level="read_committed" if committed else "read_uncommitted",
        consumer_config=kafka_client_config(settings))
    latency: dict[str, float] = {}

    def seen(update: BookUpdate) -> None:
        recv = update.record.get("ts_recv_ns") if update.record else None
        if recv:
            latency[update.symbol] = (time.time_ns() - int(recv)) / 1e6

    client.on_update(seen)
    console = console or Console()
    try:
        await client.start()
    except ClientError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    try:
        with Live(console=console, auto_refresh=False, screen=False) as live:
            while True:
                live.update(Group(*(ladder(client, s, depth, latency.get(s)) for s in symbols)), refresh=True)
                await asyncio.sleep(1 / refresh)  # the screen's refresh rate, not synchronisation
    finally:
        await client.stop()


def run(settings: Settings, symbols: list[str], depth: int, books_url: str | None, fast: bool = False) -> int:
    wanted = [normalize(s.replace("-", "/")) for s in symbols]  # BTC/USD or BTC-USD
    url = books_url if books_url is not None else f"http://127.0.0.1:{settings.web_port}"
    try:
        return asyncio.run(follow(settings, wanted, depth, url or None, fast=fast))
    except KeyboardInterrupt:
        return 0

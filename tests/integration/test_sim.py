"""The simulator over real sockets: checksums at every depth, Kraken's ack shapes, each fault control."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from websockets.exceptions import ConnectionClosedError

from models.book import DEPTHS
from models.kraken.frames import Ack, BookFrame, Heartbeat, Pong, StatusFrame
from sim.server import SimSettings, Simulator
from tests.conftest import CAPTURES
from tests.simclient import SimClient, control

pytestmark = pytest.mark.integration


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(SimSettings(port=0, pair_rate=40, seed=3, heartbeat_interval=0.2)) as simulator:
        yield simulator


async def test_every_checksum_verifies_at_every_depth_on_60_pairs(sim: Simulator) -> None:
    symbols = sorted(sim.specs)
    assert len(symbols) >= 50
    clients = [await SimClient.open(sim.url) for _ in DEPTHS]
    for i, (client, depth) in enumerate(zip(clients, DEPTHS, strict=False)):
        await client.subscribe("instrument")
        await client.subscribe("book", symbols[i::len(DEPTHS)], depth=depth)
    await asyncio.gather(*(c.book_messages(400) for c in clients))
    for client, depth in zip(clients, DEPTHS, strict=False):
        assert client.failures == [], f"depth {depth}"
        assert client.checked >= 400
        assert {b.depth for b in client.session.books().values()} == {depth}
        await client.close()
    precisions = {sim.specs[s].price_precision for s in symbols}
    assert precisions >= set(range(0, 11)), "tiny and whole-number prices both covered"


async def test_subscriber_book_equals_exchange_book_at_every_depth() -> None:
    """After a burst, each depth's client book is exactly the exchange's top levels (edge refills work)."""
    async with Simulator(SimSettings(port=0, rate=1e-9, seed=11)) as quiet:
        clients = [await SimClient.open(quiet.url) for _ in DEPTHS]
        for client, depth in zip(clients, DEPTHS, strict=False):
            await client.subscribe("book", ["ETH/USD"], depth=depth)
            await client.book_messages(1)  # the snapshot
        quiet.burst("ETH/USD", 400)
        market = quiet.markets["ETH/USD"]
        for client, depth in zip(clients, DEPTHS, strict=False):
            await client.send({"method": "ping", "req_id": 1})  # the pong comes after every burst frame
            while not isinstance((await client.frame())[1], Pong):
                pass
            book = client.session.books()["ETH/USD"]
            assert book.levels("bids") == market.levels(market.bids, depth), depth
            assert book.levels("asks") == market.levels(market.asks, depth), depth
            assert client.failures == [] and client.checked > 100
            await client.close()


async def test_acks_have_the_shapes_of_real_kraken_acks(sim: Simulator) -> None:
    capture_ack = orjson.loads(next(
        line for line in (CAPTURES / "depthcharge_btcusd_d25_2026-08-16.jsonl").read_text().splitlines()
        if line.startswith('{"method":"subscribe"')
    ))
    client = await SimClient.open(sim.url)
    text, status = await client.frame()
    assert isinstance(status, StatusFrame) and status.system == "online"
    assert list(orjson.loads(text)["data"][0]) == ["version", "system", "api_version", "connection_id"]

    await client.subscribe("book", ["BTC/USD"], depth=25)
    text, ack = await client.frame()
    ours = orjson.loads(text)
    assert list(ours) == list(capture_ack)
    assert list(ours["result"]) == list(capture_ack["result"])
    assert isinstance(ack, Ack) and ack.success and ack.depth == 25

    await client.send({"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 27}})
    await client.send({"method": "subscribe", "params": {"channel": "book", "symbol": ["XBT/USD"]}, "req_id": 9})
    await client.send({"method": "subscribe", "params": {"channel": "orders", "symbol": ["BTC/USD"]}})
    await client.send({"method": "cancel_all"})
    await client.send({"method": "ping", "req_id": 101})
    errors: list[dict[str, object]] = []
    pong = None
    while pong is None or len(errors) < 4:
        text, frame = await client.frame()
        if isinstance(frame, Pong):
            pong = frame
        elif isinstance(frame, Ack) and not frame.success:
            errors.append(orjson.loads(text))
    depth_error, pair_error, channel_error, method_error = errors
    assert list(depth_error) == ["error", "method", "success", "time_in", "time_out"]
    assert depth_error["error"] == "Subscription depth not supported"
    assert list(pair_error) == ["error", "method", "success", "symbol", "time_in", "time_out", "req_id"]
    assert pair_error["error"] == "Currency pair not supported XBT/USD" and pair_error["req_id"] == 9
    assert channel_error["error"] == "Subscription name invalid"
    assert method_error["error"] == "Method not found: cancel_all"
    assert pong.req_id == 101
    await client.close()


async def test_heartbeats_flow_once_subscribed(sim: Simulator) -> None:
    client = await SimClient.open(sim.url)
    await client.subscribe("book", ["MINA/GBP"], depth=10)
    beats = 0
    while beats < 3:
        _, frame = await client.frame()
        beats += isinstance(frame, Heartbeat)
    await client.close()


async def test_unsubscribe_then_resubscribe_gives_a_fresh_snapshot(sim: Simulator) -> None:
    client = await SimClient.open(sim.url)
    await client.subscribe("book", ["ETH/USD"], depth=10)
    await client.book_messages(20)
    await client.send({"method": "unsubscribe", "params": {"channel": "book", "symbol": ["ETH/USD"], "depth": 10}})
    await client.subscribe("book", ["ETH/USD"], depth=10)
    acks: list[Ack] = []
    while True:
        _, frame = await client.frame()
        if isinstance(frame, Ack):
            acks.append(frame)
        if isinstance(frame, BookFrame) and frame.is_snapshot:
            break
    assert [a.method for a in acks] == ["unsubscribe", "subscribe"] and all(a.success for a in acks)
    await client.book_messages(20)
    assert client.failures == []
    await client.close()


# -- fault controls -------------------------------------------------------------------------------


async def test_drop_now_closes_with_1006(sim: Simulator) -> None:
    client = await SimClient.open(sim.url)
    await client.subscribe("book", ["BTC/USD"], depth=10)
    await client.book_messages(5)
    assert (await asyncio.to_thread(control, sim.port, "drop"))["dropped"] == 1
    with pytest.raises(ConnectionClosedError) as closed:
        while True:
            await client.frame()
    assert closed.value.rcvd is None  # no close frame: an abnormal closure, code 1006


async def test_drop_every_keeps_dropping(sim: Simulator) -> None:
    await asyncio.to_thread(control, sim.port, "drop_every", seconds=0.3)
    for _ in range(2):
        client = await SimClient.open(sim.url)
        await client.subscribe("book", ["BTC/USD"], depth=10)
        with pytest.raises(ConnectionClosedError):
            while True:
                await client.frame()
    assert sim.faults.drops >= 2
    await asyncio.to_thread(control, sim.port, "drop_every", seconds=0)


async def test_corrupt_next_checksum_fails_exactly_one_message(sim: Simulator) -> None:
    client = await SimClient.open(sim.url)
    await client.subscribe("book", ["BTC/USD", "ETH/USD"], depth=10)
    await client.book_messages(20)
    assert client.failures == []
    await asyncio.to_thread(control, sim.port, "corrupt", symbol="BTC/USD")
    while not client.failures:
        await client.frame()
    await client.book_messages(100)
    assert len(client.failures) == 1 and client.failures[0].symbol == "BTC/USD"


async def test_silence_stops_data_but_not_heartbeats(sim: Simulator) -> None:
    client = await SimClient.open(sim.url)
    await client.subscribe("book", ["BTC/USD", "ETH/USD"], depth=10)
    await client.book_messages(10)
    sim.faults.silent.add("BTC/USD")
    beats, after_fence = 0, {"BTC/USD": 0, "ETH/USD": 0}
    while beats < 5:
        _, frame = await client.frame()
        if isinstance(frame, Heartbeat):
            beats += 1
        elif isinstance(frame, BookFrame) and beats >= 2:  # frames queued before the call drained by then
            after_fence[frame.books[0].symbol] += 1
    assert after_fence["BTC/USD"] == 0 and after_fence["ETH/USD"] > 0
    sim.faults.silent.discard("BTC/USD")
    while True:
        _, frame = await client.frame()
        if isinstance(frame, BookFrame) and frame.books[0].symbol == "BTC/USD":
            break
    await client.close()


async def test_delay_adds_latency_to_every_frame(sim: Simulator) -> None:
    client = await SimClient.open(sim.url)
    await client.subscribe("book", ["BTC/USD"], depth=10)
    await client.book_messages(5)
    await asyncio.to_thread(control, sim.port, "delay", seconds=0.4)
    set_at = time.time_ns()
    lags: list[float] = []
    while len(lags) < 20:
        text, frame = await client.frame()
        if isinstance(frame, BookFrame) and frame.books[0].timestamp:
            stamp = _ns(frame.books[0].timestamp)
            if stamp > set_at:
                lags.append((time.time_ns() - stamp) / 1e9)
    assert min(lags) >= 0.4
    await client.close()


async def test_burst_sends_many_events_at_once() -> None:
    async with Simulator(SimSettings(port=0, rate=0.5, seed=5)) as slow:
        client = await SimClient.open(slow.url)
        await client.subscribe("book", ["BTC/USD"], depth=1000)
        await client.book_messages(1)  # the snapshot
        await asyncio.to_thread(control, slow.port, "burst", symbol="BTC/USD", events=300)
        await client.book_messages(250)  # at 0.5 events/s this would take minutes without the burst
        assert client.failures == []
        assert slow.events >= 300
        await client.close()


async def test_reject_answers_rate_limit_errors(sim: Simulator) -> None:
    await asyncio.to_thread(control, sim.port, "reject", count=2)
    client = await SimClient.open(sim.url)
    await client.subscribe("book", ["BTC/USD", "ETH/USD", "SOL/USD"], depth=10)
    acks: list[Ack] = []
    while len(acks) < 3:
        _, frame = await client.frame()
        if isinstance(frame, Ack):
            acks.append(frame)
    assert [(a.symbol, a.success, a.error) for a in acks] == [
        ("BTC/USD", False, "Exceeded msg rate"), ("ETH/USD", False, "Exceeded msg rate"), ("SOL/USD", True, None),
    ]
    await client.close()


async def test_control_api_names_bad_requests(sim: Simulator) -> None:
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as err:
        await asyncio.to_thread(control, sim.port, "corrupt", symbol="XBT/USD")
    assert err.value.code == 400
    assert b"unknown symbol 'XBT/USD'" in err.value.read()


# -- replay ---------------------------------------------------------------------------------------


async def test_replay_serves_a_capture_verbatim() -> None:
    capture = CAPTURES / "depthcharge_minagbp_d25_resync_2026-08-18.jsonl"
    lines = [ln for ln in capture.read_text().splitlines() if ln.strip()]
    async with Simulator(SimSettings(port=0, replay=capture, speed=0)) as replay:
        client = await SimClient.open(replay.url)
        await client.subscribe("book", ["MINA/GBP"], depth=25)
        while len(client.raw) < len(lines):
            await client.frame()
        assert client.raw == lines
        assert client.checked == 19 and client.failures == []
        await client.close()


async def test_replay_sends_each_frame_at_its_due_time_from_the_first(tmp_path: Path) -> None:
    """Frames go out at the first frame's send time plus their stamps' distance from it (the control
    state says when the first went out), never before, and a late frame does not push the later ones."""
    capture = CAPTURES / "depthcharge_minagbp_d25_resync_2026-08-18.jsonl"
    lines = [ln for ln in capture.read_text().splitlines() if ln.strip()]
    stamped = [i for i, ln in enumerate(lines) if '"timestamp":"' in ln or '"time_out":"' in ln]
    first = _stamp_ns(lines[stamped[0]])
    # the capture's stamps rewritten 20 ms apart: 0.2 s of frames at speed 1
    paced = list(lines)
    for n, i in enumerate(stamped[:11]):
        paced[i] = _restamp(lines[i], first + n * 20_000_000)
    path = tmp_path / "paced.jsonl"
    path.write_text("\n".join(paced[: stamped[10] + 1]) + "\n")
    async with Simulator(SimSettings(port=0, replay=path, speed=1)) as replay:
        client = await SimClient.open(replay.url)
        await client.subscribe("book", ["MINA/GBP"], depth=25)
        arrived: list[int] = []
        while len(client.raw) < stamped[10] + 1:
            await client.frame()
            arrived.extend(time.time_ns() for _ in range(len(client.raw) - len(arrived)))
        origins = replay.state()["replay_origins"]
        await client.close()
    assert len(origins) == 1
    stamp0, sent0 = next(iter(origins.values()))
    assert stamp0 == first
    for n, i in enumerate(stamped[:11]):
        due = sent0 + n * 20_000_000
        assert arrived[i] >= due, f"frame {n} went out {(due - arrived[i]) / 1e6:.1f} ms early"
    assert arrived[stamped[10]] - (sent0 + 200_000_000) < 50_000_000  # no drift over the capture


def _stamp_ns(line: str) -> int:
    import re

    found = re.search(r'"(?:timestamp|time_out)":"([0-9T:.\-]+)Z"', line)
    assert found is not None
    return _ns(found.group(1) + "Z")


def _restamp(line: str, ns: int) -> str:
    import re
    from datetime import UTC, datetime

    whole = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return re.sub(r'"(timestamp|time_out)":"[0-9T:.\-]+Z"', lambda m: f'"{m.group(1)}":"{whole}.{ns % 10**9:09d}Z"',
                  line, count=1)


def _ns(stamp: str) -> int:
    from sim.replay import _epoch_ns

    return _epoch_ns(stamp.rstrip("Z"))


def test_recording_from_the_simulator_verifies(tmp_path: Path) -> None:
    """`krakenflow sim` and `krakenflow record` as processes, then `krakenflow verify` on the file."""
    from tests.integration.test_verify_cli import run_verify
    from tests.processes import record_from_sim

    output = tmp_path / "sim.jsonl"
    symbols = ["BTC/USD", "PEPE/USD", "BTC/JPY", "SHIB/USD", "MINA/GBP"]
    record_from_sim(output, symbols, depth=100, seconds=3)
    result = run_verify("--json", str(output))
    assert result.returncode == 0, result.stdout + result.stderr
    counts = orjson.loads(result.stdout)["sim.jsonl"]
    assert sorted(counts) == sorted(symbols)
    assert all(c["failed"] == 0 and c["checked"] > 0 for c in counts.values())

"""Kraken connection hygiene against the simulator: a shared connect limit through a storm of drops,
close codes handled by meaning, Kraken's application-level ping, a list of URLs, and ``status`` frames
turned into events and a gauge."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Cluster, http_json, wait_until
from tests.processes import free_port

pytestmark = pytest.mark.e2e

PAIRS = ["BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "DOGE/USD", "ADA/USD"]


def cluster(tmp_path: Path, **env: str) -> Cluster:
    c = Cluster(tmp_path, PAIRS, depth=10, sim_args=("--pair-rate", "5", "--seed", "6"))
    c.env.update({"KRAKENFLOW_CHANNELS": "book", **{f"KRAKENFLOW_{k.upper()}": v for k, v in env.items()}})
    return c


def subscribed(c: Cluster) -> dict[str, list[str]]:
    state = c.sim("state") or {}
    return {cid: s for cid, s in state.get("subscriptions", {}).items() if s}


def all_subscribed(c: Cluster) -> bool:
    return sorted(s for symbols in subscribed(c).values() for s in symbols) == sorted(PAIRS)


def connects(c: Cluster) -> list[float]:
    return list(c.sim("state")["connects"])


def metric(port: int, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric family on the ingest's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith(name):
            head, value = line.rsplit(" ", 1)
            values[head[len(name):]] = float(value)
    return values


LIMIT, WINDOW = 15, 5.0


def test_a_storm_of_drops_stays_within_the_shared_connect_limit(tmp_path: Path) -> None:
    # reconnects as fast as the connect limit lets them: the storm takes seconds, not minutes
    c = cluster(tmp_path, pairs_per_connection="1", connect_limit=str(LIMIT), connect_window=str(WINDOW),
                reconnect_backoff_cap="0.5")
    try:
        port = c.start_ingest()
        wait_until(lambda: all_subscribed(c), 60, "six connections, one pair each")
        start = connects(c)[-1]
        dropped = 0
        while dropped < 100:  # a storm: every connection aborted again as soon as it is up
            wait_until(lambda: c.sim("state")["connections"] > 0, 60, "a connection to drop")
            dropped += c.sim("drop")["dropped"]
        wait_until(lambda: all_subscribed(c), 120, "every pair subscribed again after the storm")
        storm = [t for t in connects(c) if t > start]
        # the limit counts on the ingest's clock at the attempt; the simulator's accept comes a little later
        worst = max(sum(1 for t in storm if s <= t < s + WINDOW - 0.5) for s in storm)
        print(f"{dropped} drops, {len(storm)} connects; at most {worst} in any {WINDOW - 0.5} s")
        assert worst <= LIMIT, storm
        assert metric(port, "krakenflow_ingest_connects_delayed_total")[""] >= 1
    finally:
        c.close()


def test_a_policy_close_waits_and_a_lost_pong_reconnects(tmp_path: Path) -> None:
    c = cluster(tmp_path, policy_wait="4", ping_interval="1", ping_timeout="1")
    try:
        port = c.start_ingest()
        wait_until(lambda: all_subscribed(c), 60, "subscribed")
        before = len(connects(c))
        assert c.sim("close", code=1008, reason="Too many requests")["closed"] >= 1
        closed_at = time.time()
        wait_until(lambda: len(connects(c)) > before, 30, "a reconnect after the 1008 close")
        waited = connects(c)[before] - closed_at
        assert waited >= 3.5, f"reconnected {waited:.1f} s after a policy-violation close"
        assert "policy violation" in c.log("ingest")
        assert metric(port, "krakenflow_ingest_close_codes_total").get('{code="1008"}', 0) >= 1
        wait_until(lambda: all_subscribed(c), 60, "subscribed again")

        before = len(connects(c))
        c.sim("pongs", on=0)  # the connection stays open, but nobody serves it any more
        try:
            wait_until(lambda: len(connects(c)) > before, 30, "a reconnect after the pong stopped coming")
        finally:
            c.sim("pongs", on=1)
        assert "no pong within 1 s" in c.log("ingest")
        assert metric(port, "krakenflow_ingest_reconnects_total").get('{reason="no pong"}', 0) >= 1
    finally:
        c.close()


def test_the_next_url_is_tried_and_status_changes_become_events(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    sim_url = c.env["KRAKENFLOW_KRAKEN_URL"]
    c.env["KRAKENFLOW_KRAKEN_URL"] = f"ws://127.0.0.1:{free_port()}/v2,{sim_url}"  # the first answers nothing
    try:
        c.start_ingest()
        web = c.start_worker()
        wait_until(lambda: all_subscribed(c), 60, "connected through the second URL")
        assert f"reconnecting to {sim_url}" in c.log("ingest")
        c.sim("status", system="maintenance")

        def statuses(records: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
            return [(r["previous"], r["system"]) for r in records if r.get("metric") == "exchange_status"]

        events = c.read("metrics", until=lambda r: (("online", "maintenance") in statuses(r)), timeout=60)
        assert statuses(events)[0] == (None, "online")
        text = urllib.request.urlopen(f"http://127.0.0.1:{web}/metrics", timeout=5).read().decode()
        assert 'krakenflow_exchange_status{system="maintenance"} 1.0' in text
        assert http_json(f"http://127.0.0.1:{web}/books/") is not None
    finally:
        c.close()


def test_rotation_makes_the_new_connection_before_it_breaks_the_old(tmp_path: Path) -> None:
    c = cluster(tmp_path, rotate_after="4", pairs_per_connection="3")
    c.env["KRAKENFLOW_CHANNELS"] = "book,trade"
    try:
        port = c.start_ingest()
        web = c.start_worker()
        wait_until(lambda: all_subscribed(c), 60, "subscribed")
        wait_until(lambda: metric(port, "krakenflow_ingest_rotations_total").get("", 0) >= 4, 60,
                   "both connections rotated twice")
        overlap = c.sim("state")["book_overlap"]
        assert all(overlap.get(p, 0) >= 2 for p in PAIRS), overlap  # subscribed anew before the old closed
        assert c.sim("pause", on=1)["ok"]
        for pair in PAIRS:
            exchange = c.sim("book", symbol=pair, depth=10)
            url = f"http://127.0.0.1:{web}/books/{pair.replace('/', '-')}/?depth=10"
            wait_until(lambda: (lambda b: b if b and (b["bids"], b["asks"]) == (exchange["bids"], exchange["asks"])
                                else None)(http_json(url)), 60, f"{pair} to equal the exchange")
        deltas = c.read("book.deltas")
        assert [d for d in deltas if not d["checksum_ok"]] == [], "a handover broke a book"
        for pair in PAIRS:
            seqs = [d["seq"] for d in deltas if d["symbol"] == pair.replace("/", "-")]
            assert seqs == list(range(1, len(seqs) + 1)), f"{pair}: a seq is missing or repeated"
        events = c.read("book.events")
        assert [e for e in events if e["state"] in ("invalidated", "resyncing", "stale")] == [], \
            "no book lost its feed across the rotations"
        rotated = c.log("ingest")
        assert "rotated connection" in rotated and "no book snapshot" not in rotated
    finally:
        c.close()


def test_without_book_in_the_channels_no_book_is_ever_subscribed(tmp_path: Path) -> None:
    c = cluster(tmp_path, channels="trade", stale_after="1")
    try:
        c.start_ingest()
        wait_until(lambda: all_subscribed(c), 60, "trades subscribed")
        # heartbeats come once a second: four of them span more than the 1 s staleness, checked each second
        c.read("raw", until=lambda r: sum(1 for f in r if f.get("channel") == "heartbeat") >= 4, timeout=60)
        assert c.sim("state")["book_overlap"] == {}, "the staleness watch subscribed a book"
        assert "resync" not in c.log("ingest")
    finally:
        c.close()

"""The live web page in a real headless Chromium against a running pipeline of two workers: it lists
every pair, follows one book's ladder live, and the ladder is what ``GET /books/{symbol}/`` answers."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import Browser
from tests.cluster import Cluster, http_json, wait_until

pytestmark = pytest.mark.e2e

PAIRS = ["BTC/USD", "ETH/USD", "SOL/USD", "DOGE/USD"]
SYMBOLS = sorted(p.replace("/", "-") for p in PAIRS)
LADDER = """[...document.querySelectorAll('#ladder tbody tr')].map(r => [...r.cells].map(c => c.textContent))"""
SEQ = "document.body ? document.body.dataset.seq || null : null"  # null while the page loads
OVERVIEW = """[...document.querySelectorAll('#books tbody tr')].map(r => [...r.cells].map(c => c.textContent))"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, list[int], Browser, Path]]:
    tmp = tmp_path_factory.mktemp("ui")
    cluster = Cluster(tmp, PAIRS, depth=25, sim_args=("--pair-rate", "10"))
    browser = None
    try:
        cluster.start_ingest()
        webs = [cluster.start_worker("a"), cluster.start_worker("b")]

        def split() -> bool:
            rows = (http_json(f"http://127.0.0.1:{webs[0]}/books/") or {"books": []})["books"]
            return len(rows) == len(PAIRS) and all(r["state"] == "live" for r in rows) and \
                len({r["worker"] for r in rows}) == 2

        wait_until(split, 120, "both workers to own live books")
        browser = Browser(tmp)
        yield cluster, webs, browser, tmp
    finally:
        if browser is not None:
            browser.close()
        cluster.close()


def test_the_overview_lists_every_book_with_its_owner(page: tuple[Cluster, list[int], Browser, Path]) -> None:
    cluster, webs, browser, _ = page
    browser.goto(f"http://127.0.0.1:{webs[0]}/ui/")
    rows = wait_until(lambda: (lambda r: r if len(r) == len(PAIRS) else None)(browser.js(OVERVIEW)), 30,
                      "the overview's rows")
    listing = {r["symbol"]: r for r in http_json(f"http://127.0.0.1:{webs[0]}/books/")["books"]}
    assert [r[0] for r in rows] == SYMBOLS
    for symbol, state, bid, ask, spread, updated, failures, worker in rows:
        row = listing[symbol]
        assert state == "live" and worker == row["worker"] and failures == str(row["checksums_failed"])
        assert bid and ask and spread and updated.endswith("ago")
    assert len({r[7] for r in rows}) == 2, "pairs of both workers, served by one"
    assert browser.js("document.getElementById('status').textContent") == "live"


def test_a_book_page_follows_the_ladder_live_and_matches_the_view(
        page: tuple[Cluster, list[int], Browser, Path]) -> None:
    cluster, webs, browser, tmp = page
    a, b = webs
    owned_by_b = [r["symbol"] for r in http_json(f"http://127.0.0.1:{b}/books/?local=1")["books"]]
    symbol = sorted(owned_by_b)[0]  # a book worker a does not own: the stream reads it from b
    browser.goto(f"http://127.0.0.1:{a}/ui/?symbol={symbol}")
    first = wait_until(lambda: browser.js(SEQ), 30, "the ladder's first book")
    wait_until(lambda: browser.js(SEQ) != first, 30, "the ladder to update")
    assert len(browser.js(LADDER)) == 25

    assert cluster.sim("pause", on=1)["ok"]
    try:
        def same() -> Any:
            view = http_json(f"http://127.0.0.1:{a}/books/{symbol}/?depth=25")
            ladder = browser.js(LADDER)
            expected = [[bid[1], bid[0], ask[0], ask[1]] for bid, ask in zip(view["bids"], view["asks"], strict=True)]
            seq = f"{view['epoch']}/{view['seq']}"
            return view if ladder == expected and browser.js(SEQ) == seq else None

        view = wait_until(same, 30, "the page's ladder to equal GET /books/{symbol}/")
        meta = browser.js("document.getElementById('detail-meta').textContent")
        assert f"checksum {view['checksum']}" in meta and f":{b}" in meta, meta
        assert browser.js("document.getElementById('detail-state').textContent") == "live"
        # the depth chart drew something: the canvas is not blank
        assert browser.js("document.getElementById('depth').toDataURL().length") > 5000
        shot = browser.screenshot(tmp / "ui.png")
        kept = Path(__file__).resolve().parents[2] / "test-output"
        kept.mkdir(exist_ok=True)
        shutil.copy(shot, kept / "ui.png")
        print(f"\nscreenshot of /ui/?symbol={symbol}: {kept / 'ui.png'}")
    finally:
        cluster.sim("pause", on=0)

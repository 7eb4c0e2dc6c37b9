// krakenflow's live page: the cluster's books (server-sent events from /ui/stream/books) and one book's
// ladder and depth chart (/ui/stream/books/{symbol}). Prices stay decimal strings as the worker sends
// them; only the chart's geometry uses Number.
"use strict";

const params = new URLSearchParams(location.search);
const selected = params.get("symbol");
const status = document.getElementById("status");

function text(value) { return value === null || value === undefined ? "–" : String(value); }

function age(ns) {
  if (!ns) return "–";
  const seconds = Math.max(0, Date.now() / 1000 - ns / 1e9);
  return seconds < 60 ? seconds.toFixed(1) + " s ago" : Math.round(seconds / 60) + " min ago";
}

function cell(row, value, cls) {
  const td = row.insertCell();
  td.textContent = text(value);
  if (cls) td.className = cls;
  return td;
}

function renderBooks(body) {
  const tbody = document.querySelector("#books tbody");
  tbody.replaceChildren();
  for (const b of body.books) {
    const row = tbody.insertRow();
    row.dataset.symbol = b.symbol;
    if (b.symbol === selected) row.classList.add("selected");
    cell(row, b.symbol, "symbol");
    cell(row, b.state, "state state-" + b.state);
    cell(row, b.best_bid ? b.best_bid[0] : null, "bid");
    cell(row, b.best_ask ? b.best_ask[0] : null, "ask");
    cell(row, b.spread, "spread");
    cell(row, age(b.last_update_ns), "updated");
    cell(row, b.checksums_failed, "failures");
    cell(row, b.worker, "worker");
    row.addEventListener("click", () => { location.search = "?symbol=" + encodeURIComponent(b.symbol); });
  }
  const missing = document.getElementById("unanswered");
  missing.hidden = body.unanswered.length === 0;
  missing.textContent = body.unanswered.map(u => u.worker + " did not answer: " + u.reason).join("; ");
  document.body.dataset.books = String(body.books.length);
}

function renderBook(book) {
  document.getElementById("detail-symbol").textContent = book.symbol;
  const state = document.getElementById("detail-state");
  state.textContent = book.state;
  state.className = "state-" + book.state;
  document.getElementById("detail-meta").textContent =
    "seq " + book.epoch + "/" + book.seq + " · checksum " + book.checksum + " · served by " + book.worker;
  const tbody = document.querySelector("#ladder tbody");
  tbody.replaceChildren();
  const rows = Math.max(book.bids.length, book.asks.length);
  for (let i = 0; i < rows; i++) {
    const row = tbody.insertRow();
    const bid = book.bids[i] || ["", ""], ask = book.asks[i] || ["", ""];
    cell(row, bid[1], "bid-qty"); cell(row, bid[0], "bid"); cell(row, ask[0], "ask"); cell(row, ask[1], "ask-qty");
  }
  drawDepth(book);
  document.body.dataset.seq = book.epoch + "/" + book.seq;
}

function drawDepth(book) {
  const canvas = document.getElementById("depth");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 30;
  ctx.clearRect(0, 0, w, h);
  const cumulative = levels => {
    let sum = 0;
    return levels.map(([p, q]) => [Number(p), (sum += Number(q))]);
  };
  const bids = cumulative(book.bids), asks = cumulative(book.asks);
  if (!bids.length || !asks.length) return;
  const lo = bids[bids.length - 1][0], hi = asks[asks.length - 1][0];
  const top = Math.max(bids[bids.length - 1][1], asks[asks.length - 1][1]);
  const x = p => pad + (p - lo) / (hi - lo || 1) * (w - 2 * pad);
  const y = q => h - pad - q / (top || 1) * (h - 2 * pad);
  for (const [side, color] of [[bids, "rgba(63,185,80,0.45)"], [asks, "rgba(248,81,73,0.45)"]]) {
    ctx.beginPath();
    ctx.moveTo(x(side[0][0]), y(0));
    for (const [p, q] of side) { ctx.lineTo(x(p), y(q)); }
    ctx.lineTo(x(side[side.length - 1][0]), y(0));
    ctx.closePath();
    ctx.fillStyle = color;
    ctx.fill();
  }
  ctx.fillStyle = "#8b98a5";
  ctx.font = "12px system-ui";
  ctx.fillText(book.bids[book.bids.length - 1][0], pad, h - 10);
  ctx.fillText(book.asks[book.asks.length - 1][0], w - pad - 60, h - 10);
}

function follow(url, event, render) {
  const source = new EventSource(url);
  source.addEventListener(event, e => {
    status.textContent = "live";
    status.className = "status ok";
    render(JSON.parse(e.data));
  });
  source.onerror = () => { status.textContent = "reconnecting…"; status.className = "status down"; };
  return source;
}

follow("/ui/stream/books", "books", renderBooks);
if (selected) {
  document.getElementById("detail").hidden = false;
  follow("/ui/stream/books/" + encodeURIComponent(selected) + "?depth=25", "book", renderBook);
}

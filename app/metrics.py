"""Prometheus metrics of the worker and the ingest, read from their state at scrape time.

Nothing here runs per event: the book processor and the ingest keep plain integer counters, and these
collectors turn them into metric families when Prometheus scrapes. Labels stay bounded: ``symbol``
(the configured pairs), ``state`` (five book states), ``side``, ``channel``, ``reason``, ``partition``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from models.histogram import LatencyHistogram
from models.kraken.messages import SYSTEM_STATUSES

if TYPE_CHECKING:
    from agents.candles import Candles
    from agents.pipeline import BookPipeline
    from agents.supervision import TaskRestarts
    from ingest.service import Ingest

STATES = ("new", "live", "stale", "invalidated", "resyncing")


def histogram(name: str, doc: str, source: LatencyHistogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=source.cumulative(), sum_value=source.sum_ns / 1e9)


class WorkerCollector(Collector):
    """Per pair book health and the worker's pipeline, from the book pipeline's state."""

    def __init__(self, pipeline: BookPipeline, app: Any) -> None:
        self.pipeline = pipeline
        self.app = app

    def collect(self) -> Iterator[Any]:
        p = self.pipeline
        pairs = list(p.processor.pairs.values())
        now = time.time_ns()
        families: dict[str, Any] = {
            "frames": CounterMetricFamily("krakenflow_book_frames", "Book frames processed", labels=["symbol"]),
            "updates": CounterMetricFamily("krakenflow_book_messages", "Book messages applied",
                                           labels=["symbol", "kind"]),
            "checksum": CounterMetricFamily("krakenflow_checksum", "Checksums checked", labels=["symbol", "result"]),
            "resyncs": CounterMetricFamily("krakenflow_resyncs", "Resyncs requested", labels=["symbol"]),
            "state": GaugeMetricFamily("krakenflow_book_state", "1 for the book's current state",
                                       labels=["symbol", "state"]),
            "spread": GaugeMetricFamily("krakenflow_book_spread", "Best ask minus best bid", labels=["symbol"]),
            "depth": GaugeMetricFamily("krakenflow_book_levels", "Levels held per side", labels=["symbol", "side"]),
            "lag": GaugeMetricFamily("krakenflow_exchange_lag_seconds",
                                     "Now minus the exchange time of the pair's last message", labels=["symbol"]),
        }
        for st in pairs:
            families["frames"].add_metric([st.norm], st.frames)
            families["updates"].add_metric([st.norm, "snapshot"], st.snapshots)
            families["updates"].add_metric([st.norm, "update"], st.updates)
            families["checksum"].add_metric([st.norm, "ok"], st.checksums_ok)
            families["checksum"].add_metric([st.norm, "failed"], st.checksums_failed)
            families["resyncs"].add_metric([st.norm], st.resyncs)
            for state in STATES:
                families["state"].add_metric([st.norm, state], 1.0 if st.state == state else 0.0)
            if st.book is not None:
                bid, ask = st.book.best()
                if bid and ask:
                    families["spread"].add_metric([st.norm], float(ask[0]) - float(bid[0]))
                families["depth"].add_metric([st.norm, "bids"], st.book.count("bids"))
                families["depth"].add_metric([st.norm, "asks"], st.book.count("asks"))
            if st.ts_exchange_ns:
                families["lag"].add_metric([st.norm], (now - st.ts_exchange_ns) / 1e9)
        yield from families.values()

        counters = p.processor.counters
        status = GaugeMetricFamily("krakenflow_exchange_status", "1 for Kraken's last reported system status",
                                   labels=["system"])
        for system in SYSTEM_STATUSES:
            status.add_metric([system], 1.0 if p.processor.system == system else 0.0)
        yield status
        yield _counter("krakenflow_deadletter", "Frames sent to the dead-letter topic", counters["deadletter"])
        yield _counter("krakenflow_duplicates_skipped", "Raw records skipped as already applied",
                       counters["duplicates"])
        yield _counter("krakenflow_fenced_frames", "Frames refused: written by an ingest that had lost the lock",
                       counters["fenced"])
        yield _counter("krakenflow_unauthenticated_frames", "Frames refused: no lock_gen of the live ingest "
                       "(KRAKENFLOW_REQUIRE_LOCK_GEN)", counters["unauthenticated"])
        yield _counter("krakenflow_misfiled_frames", "Frames refused: a pair frame under another pair's key",
                       counters["misfiled"])
        yield _counter("krakenflow_instrument_conflicts", "Instrument precisions that broke a verified book, kept "
                       "out", counters["instrument_conflicts"])
        yield _counter("krakenflow_changelog_caught_up", "Books changelog records a resumed partition applied: a "
                       "former owner committed them after the local state", p.changelog_caught_up)
        yield _counter("krakenflow_poison_records", "Records that took the book agent down twice, dead-lettered "
                       "and skipped", p.poison_skipped)
        yield _counter("krakenflow_trades_missing", "Trades never received: trade_id gaps announced as trade_gap",
                       counters["trades_missing"])
        yield _counter("krakenflow_discarded_updates", "Updates discarded while a book awaited a snapshot",
                       counters["discarded"])
        yield _counter("krakenflow_worker_events", "Raw records processed by this worker", p.events)
        yield _counter("krakenflow_worker_batches", "Agent batches processed", p.batches)
        yield _counter("krakenflow_rebalances", "Partition rebalances seen by this worker", p.rebalances)
        yield _counter("krakenflow_catchup_records", "Records read directly to close a gap in a raw partition",
                       p.caught_up)
        yield _counter("krakenflow_raw_records_lost", "Unprocessed raw records removed by retention (books resync)",
                       p.lost_records)
        yield _counter("krakenflow_replayed_records", "Raw records at or below the stored watermark, skipped",
                       p.replayed)
        yield _counter("krakenflow_unowned_records", "Raw records of partitions fenced or not assigned, skipped",
                       p.fenced_events)
        if p.transactions is not None:
            tx = p.transactions
            yield _counter("krakenflow_transactions_committed", "Book batch transactions committed", tx.commits)
            yield _counter("krakenflow_transactions_retried", "Book batch transactions aborted and retried", tx.retries)
            yield _counter("krakenflow_transactions_fenced",
                           "Book batch transactions the consumer group refused (this worker's generation was stale)",
                           tx.fenced)
            yield _counter("krakenflow_transactional_producer_restarts",
                           "Transactional producers replaced after their epoch was taken (a timed-out transaction, "
                           "or a new owner of one of its partitions fenced it)", tx.reinits)
            yield _counter("krakenflow_transactions_checked",
                           "Book batch transactions that carried the consumer group check (a producer's first of "
                           "each partition since its assignment)", tx.checks)
            yield _counter("krakenflow_former_owners_fenced",
                           "Former owners' transactional ids this worker fenced when it took their partitions over",
                           tx.fenced_ids)
        channel = getattr(self.app, "batch_channels", {}).get(p.settings.raw_topic)
        yield _counter("krakenflow_drained_records",
                       "Raw records the consumer handed to the book agent in whole batches (app/batching.py)",
                       channel.records if channel is not None else 0)
        yield _counter("krakenflow_delivery_retries", "Output deliveries retried", p.delivery_retries)
        yield _counter("krakenflow_table_records_written", "Book table records written", p.store.records_written)
        yield _counter("krakenflow_table_bytes_written", "Book table bytes written", p.store.bytes_written)
        yield GaugeMetricFamily("krakenflow_table_recovery_seconds",
                                "Seconds from the last assignment to the first processed batch",
                                value=p.recovery_seconds)
        yield histogram("krakenflow_processing_latency_seconds", "Ingest receive to delta emitted",
                        p.processor.latency)
        lag = GaugeMetricFamily("krakenflow_consumer_lag", "Raw records not yet processed", labels=["partition"])
        for partition, value in p.consumer_lag(self.app).items():
            lag.add_metric([str(partition)], value)
        yield lag


class IngestCollector(Collector):
    """The live ingest's connections, traffic and producer."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    def collect(self) -> Iterator[Any]:
        ingest, stats = self.ingest, self.ingest.stats
        yield GaugeMetricFamily("krakenflow_ingest_live", "1 while this process is the cluster's live ingest",
                                value=1.0 if ingest.active.is_set() else 0.0)
        connected = GaugeMetricFamily("krakenflow_ingest_connected", "1 while a Kraken connection is up",
                                      labels=["connection"])
        reasons: Counter[str] = Counter()
        codes: Counter[int] = Counter()
        for n, connection in enumerate(ingest.connections):
            connected.add_metric([str(n)], 1.0 if connection.connected.is_set() else 0.0)
            reasons.update(connection.reconnects)
            codes.update(connection.closes)
        yield connected
        yield _labeled_counter("krakenflow_ingest_reconnects", "Reconnects by reason", "reason", reasons)
        yield _labeled_counter("krakenflow_ingest_close_codes", "Kraken connections closed, by close code", "code",
                               codes)
        yield _counter("krakenflow_ingest_connects_delayed", "Kraken connects that waited for the connect limit",
                       ingest.limiter.delayed)
        yield _counter("krakenflow_ingest_connects", "Kraken connects attempted (about 150 per 10 minutes per IP "
                       "allowed)", stats.connects)
        yield _counter("krakenflow_ingest_suspensions", "Times frames were held back while the ingest lock was in "
                       "doubt", stats.suspensions)
        frames = CounterMetricFamily("krakenflow_ingest_frames", "Frames received", labels=["channel"])
        size = CounterMetricFamily("krakenflow_ingest_bytes", "Bytes received", labels=["channel"])
        for channel, count in stats.frames.items():
            frames.add_metric([channel], count)
            size.add_metric([channel], stats.bytes.get(channel, 0))
        yield frames
        yield size
        yield _counter("krakenflow_ingest_resyncs", "Per-pair resyncs sent", sum(c.resyncs for c in ingest.connections))
        yield _counter("krakenflow_ingest_dropped_frames", "Frames not delivered to Kafka (expected 0)",
                       stats.dropped)
        yield GaugeMetricFamily("krakenflow_ingest_producer_queue", "Frames handed to the producer, not yet acked",
                                value=stats.in_flight)
        yield _counter("krakenflow_ingest_kafka_drops", "Kraken connections dropped: Kafka could not take frames",
                       stats.kafka_drops)
        yield _counter("krakenflow_ingest_lock_releases", "Ingest lock given up: Kafka took no frame for too long",
                       stats.lock_releases)
        yield _counter("krakenflow_ingest_rotations", "Kraken connections replaced, make before break",
                       stats.rotations)
        yield _counter("krakenflow_ingest_producer_renewals",
                       "Ingest Kafka producers replaced after losing a batch (its partition refused all later ones)",
                       stats.producer_renewals)
        yield GaugeMetricFamily("krakenflow_ingest_failing_seconds", "Seconds Kafka has taken no frame (0: healthy)",
                                value=ingest.failing_for())
        yield _labeled_counter("krakenflow_ingest_task_restarts", "Ingest tasks that died and were restarted", "task",
                               stats.task_restarts)
        yield histogram("krakenflow_ingest_send_latency_seconds", "Producer send to broker ack", stats.send_latency)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _labeled_counter(name: str, doc: str, label: str, counts: Mapping[Any, int]) -> CounterMetricFamily:
    """One sample per key of ``counts`` (in key order), labelled ``label``."""
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, count in sorted(counts.items()):
        family.add_metric([str(key)], count)
    return family


class CandleCollector(Collector):
    """The candle agent's counters, and the worker's task restarts."""

    def __init__(self, candles: Candles, restarts: TaskRestarts) -> None:
        self.candles, self.restarts = candles, restarts

    def collect(self) -> Iterator[Any]:
        c = self.candles
        yield _counter("krakenflow_candle_trades", "Trades folded into candles", c.stats["trades"])
        yield _counter("krakenflow_candles_closed", "Candles closed and published", c.stats["closed"])
        yield _counter("krakenflow_candle_late_trades",
                       "Trades whose candle window had closed (exchange time past its end + grace)", c.clock.late)
        yield _counter("krakenflow_candle_duplicate_trades", "Trades already counted in their candle",
                       c.clock.duplicates)
        yield _labeled_counter("krakenflow_worker_task_restarts", "Worker tasks that died and were restarted", "task",
                               self.restarts.counts)

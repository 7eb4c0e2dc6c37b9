"""Prometheus metrics of the worker and the ingest, read from their state at scrape time.

Nothing here runs per event: the book processor and the ingest keep plain integer counters, and these
collectors turn them into metric families when Prometheus scrapes. Labels stay bounded: ``symbol``
(the configured pairs), ``state`` (five book states), ``side``, ``channel``, ``reason``, ``partition``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from models.histogram import LatencyHistogram

if TYPE_CHECKING:
    from agents.pipeline import BookPipeline
    from app.ingest import Ingest

STATES = ("new", "live", "stale", "invalidated", "resyncing")


def histogram(name: str, doc: str, source: LatencyHistogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=source.cumulative(), sum_value=source.sum_ns / 1e9)


class WorkerCollector(Collector):
    """Per pair book health and the worker's pipeline, from the book pipeline's state."""

    def __init__(self, pipeline: "BookPipeline", app: Any) -> None:
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
            c = st.counters
            families["frames"].add_metric([st.norm], c["frames"])
            families["updates"].add_metric([st.norm, "snapshot"], c["snapshots"])
            families["updates"].add_metric([st.norm, "update"], c["updates"])
            families["checksum"].add_metric([st.norm, "ok"], c["checksum_ok"])
            families["checksum"].add_metric([st.norm, "failed"], c["checksum_failed"])
            families["resyncs"].add_metric([st.norm], c["resyncs"])
            for state in STATES:
                families["state"].add_metric([st.norm, state], 1.0 if st.state == state else 0.0)
            if st.book is not None:
                bid, ask = st.book.best()
                if bid and ask:
                    families["spread"].add_metric([st.norm], float(ask[0]) - float(bid[0]))
                families["depth"].add_metric([st.norm, "bids"], len(st.book.bids))
                families["depth"].add_metric([st.norm, "asks"], len(st.book.asks))
            if st.ts_exchange_ns:
                families["lag"].add_metric([st.norm], (now - st.ts_exchange_ns) / 1e9)
        yield from families.values()

        counters = p.processor.counters
        yield _counter("krakenflow_deadletter", "Frames sent to the dead-letter topic", counters["deadletter"])
        yield _counter("krakenflow_duplicates_skipped", "Raw records skipped as already applied",
                       counters["duplicates"])
        yield _counter("krakenflow_discarded_updates", "Updates discarded while a book awaited a snapshot",
                       counters["discarded"])
        yield _counter("krakenflow_worker_events", "Raw records processed by this worker", p.events)
        yield _counter("krakenflow_worker_batches", "Agent batches processed", p.batches)
        yield _counter("krakenflow_rebalances", "Partition rebalances seen by this worker", p.rebalances)
        yield _counter("krakenflow_catchup_records", "Records read to close a gap after a takeover", p.caught_up)
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

    def __init__(self, ingest: "Ingest") -> None:
        self.ingest = ingest

    def collect(self) -> Iterator[Any]:
        ingest, stats = self.ingest, self.ingest.stats
        yield GaugeMetricFamily("krakenflow_ingest_live", "1 while this process is the cluster's live ingest",
                                value=1.0 if ingest.active.is_set() else 0.0)
        connected = GaugeMetricFamily("krakenflow_ingest_connected", "1 while a Kraken connection is up",
                                      labels=["connection"])
        reconnects = CounterMetricFamily("krakenflow_ingest_reconnects", "Reconnects by reason", labels=["reason"])
        by_reason: dict[str, int] = {}
        for n, connection in enumerate(ingest.connections):
            connected.add_metric([str(n)], 1.0 if connection.connected.is_set() else 0.0)
            for reason, count in connection.reconnects.items():
                by_reason[reason] = by_reason.get(reason, 0) + count
        for reason, count in by_reason.items():
            reconnects.add_metric([reason], count)
        yield connected
        yield reconnects
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
        yield histogram("krakenflow_ingest_send_latency_seconds", "Producer send to broker ack", stats.send_latency)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)

"""krakenflow settings: one typed object, read from ``KRAKENFLOW_*`` environment variables.

Every variable is listed in the README. Faust's own settings are derived from these in
:mod:`app.main`, so the worker, the ingest and ``krakenflow replay`` agree on topics and brokers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

from models.book import DEPTHS
from models.marketdata import WhaleThresholds

DEFAULT_PAIRS = ("BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "DOGE/USD", "ADA/USD", "LTC/USD", "LINK/USD")


class SettingsError(ValueError):
    """A setting with a bad value; the message names the variable and the fix."""


def _split(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True, slots=True)
class Settings:
    broker: str = "kafka://127.0.0.1:9092"
    kraken_url: str = "wss://ws.kraken.com/v2"
    pairs: tuple[str, ...] = DEFAULT_PAIRS
    depth: int = 25
    channels: tuple[str, ...] = ("book", "trade", "ticker")
    raw_partitions: int = 8
    output_partitions: int = 8
    topic_prefix: str = "kraken"
    app_id: str = "krakenflow"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    canonical_host: str = ""  # how other workers reach this one (a container's hostname); default web_host
    data_dir: Path = Path("var")
    embedded_broker: bool = True
    ingest: str = "auto"  # auto: every worker is a candidate, one is elected; off: never in this process
    pairs_per_connection: int = 50
    stale_after: float = 15.0
    resync_min_interval: float = 5.0
    snapshot_interval_ms: int = 1000
    snapshot_levels: int = 10
    batch_max: int = 2000
    batch_within: float = 0.05
    replication_factor: int = 1
    candle_grace: float = 10.0  # seconds a candle window stays open past its end for late trades
    whale_notional: str = "100000"  # quote-currency notional of a "whale" trade (kraken.metrics alert)
    whale_thresholds: tuple[str, ...] = ()  # per pair overrides: BTC/USD=250000,ETH/USD=100000
    faust_sensor: bool = True
    ingest_metrics_port: int = 6065  # /metrics of a standalone `krakenflow ingest`
    sim_port: int = 8765  # where `krakenflow run` starts the simulator when Kraken is unreachable

    # -- topics ------------------------------------------------------------------------------------

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"

    @property
    def raw_topic(self) -> str:
        return self.topic("raw")

    @property
    def kafka_bootstrap(self) -> str:
        """``host:port[,host:port]`` for aiokafka, from the ``kafka://`` URL(s)."""
        servers = []
        for part in self.broker.split(";"):
            url = urlsplit(part.strip() if "://" in part else f"kafka://{part.strip()}")
            servers.append(url.netloc)
        return ",".join(servers)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            name = f"KRAKENFLOW_{f.name.upper()}"
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(name, raw, f.default)
        if "embedded_broker" not in values and "broker" in values:
            # a broker other than the local default is taken to be Apache Kafka
            values["embedded_broker"] = urlsplit(str(values["broker"])).hostname in ("127.0.0.1", "localhost")
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.depth not in DEPTHS:
            raise SettingsError(f"KRAKENFLOW_DEPTH={self.depth} is not a Kraken book depth; use one of {DEPTHS}")
        if not self.pairs:
            raise SettingsError("KRAKENFLOW_PAIRS is empty; give pairs like BTC/USD,ETH/USD")
        for pair in self.pairs:
            if "/" not in pair:
                raise SettingsError(f"KRAKENFLOW_PAIRS has {pair!r}; Kraken v2 pairs look like BTC/USD")
        if self.ingest not in ("auto", "off"):
            raise SettingsError(f"KRAKENFLOW_INGEST={self.ingest!r}; use auto or off")
        try:
            WhaleThresholds.parse(self.whale_notional, self.whale_thresholds)
        except (ArithmeticError, ValueError):
            raise SettingsError(
                f"KRAKENFLOW_WHALE_NOTIONAL={self.whale_notional!r} / KRAKENFLOW_WHALE_THRESHOLDS="
                f"{','.join(self.whale_thresholds)!r}: give a number, and PAIR=number items like BTC/USD=250000"
            ) from None
        if not self.broker.startswith("kafka://"):
            raise SettingsError(f"KRAKENFLOW_BROKER={self.broker!r}; write it as kafka://host:port")


def _convert(name: str, raw: str, default: object) -> object:
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            return _split(raw)
        if isinstance(default, Path):
            return Path(raw)
        return raw
    except ValueError:
        kind = type(default).__name__
        raise SettingsError(f"{name}={raw!r} is not a valid {kind}") from None

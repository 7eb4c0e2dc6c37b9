"""krakenflow settings: one typed object, read from ``KRAKENFLOW_*`` environment variables.

Every variable is listed in the README. Faust's own settings are derived from these in
:mod:`app.factory`, so the worker, the ingest and ``krakenflow replay`` agree on topics and brokers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

from app.profile import APACHE_KAFKA, PROFILES, BrokerProfile, profile
from models.book import DEPTHS
from models.marketdata import WhaleThresholds

GUARANTEES = ("auto", "exactly_once", "at_least_once")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
DEFAULT_PAIRS = ("BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "DOGE/USD", "ADA/USD", "LTC/USD", "LINK/USD")


class SettingsError(ValueError):
    """A setting with a bad value; the message names the variable and the fix."""


def _split(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True, slots=True)
class Settings:
    broker: str = "kafka://127.0.0.1:9092"
    kraken_url: str = "wss://ws.kraken.com/v2"  # several, comma-separated: tried in turn after a failure
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
    broker_profile: str = "apache-kafka"  # or "embedded" (Tansu): see app/profile.py
    # exactly_once: each book batch's outputs, table changelog and raw offsets commit in one Kafka
    # transaction (agents/transactions.py); at_least_once: a crash can repeat outputs; auto: exactly
    # once on Apache Kafka, at least once on the embedded broker (it has no transactions)
    processing_guarantee: str = "auto"
    ingest: str = "auto"  # auto: every worker is a candidate, one is elected; off: never in this process
    # whether a frame without the live ingest's lock_gen (krakenflow replay, another writer) is refused
    # (models/session.py): 1 always, 0 never (a cluster fed by replay), auto: always on Apache Kafka with
    # this worker in the ingest election, else on each raw partition once the live ingest has written it
    require_lock_gen: str = "auto"
    pairs_per_connection: int = 50
    ingest_send_timeout: float = 10.0  # seconds a frame may wait for Kafka before its connection is dropped
    ingest_linger_ms: int = 5  # the ingest producer's linger: how long a frame waits for others to share its batch
    ingest_release_after: float = 30.0  # seconds of Kafka taking no frame before the ingest lock is given up
    stop_timeout: float = 8.0  # seconds a worker or ingest may take to stop (a gone broker would hang it)
    # the worker's consumer group session: a worker silent this long (killed, paused) loses its partitions
    group_session_timeout: float = 10.0
    # fault injection for tests and bench/faults.py: each book transaction is held open this long before
    # it commits (a commit in flight across a pause); 0 in production
    fault_commit_hold_ms: int = 0
    stale_after: float = 15.0
    ready_lag: int = 1000  # raw records a worker's partition may be behind and still answer /readyz 200
    ping_interval: float = 30.0  # seconds between Kraken application-level pings on each connection
    ping_timeout: float = 10.0  # seconds a pong may take before the connection counts as dead
    connect_limit: int = 100  # Kraken connects allowed per connect_window (Kraken: about 150 per 10 min per IP)
    connect_window: float = 600.0
    policy_wait: float = 60.0  # seconds before reconnecting after Kraken closed with 1008 or 1013
    rotate_after: float = 21600.0  # seconds before a Kraken connection is replaced, make before break (0: never)
    rotate_timeout: float = 30.0  # seconds the new connection may take to bring every pair's snapshot
    reconnect_backoff_cap: float = 30.0  # the longest wait between reconnects (exponential, full jitter)
    resync_min_interval: float = 5.0
    snapshot_interval_ms: int = 1000
    snapshot_levels: int = 10
    fetch_max_wait_ms: int = 10  # the worker consumer's fetch wait on Apache Kafka (Faust's is 1500: app/profile.py)
    native: bool = True  # the native book core (native/, Rust) when it is built; 0: the pure-Python engine
    batch_drain: bool = True  # whole fetched batches to the book agent (app/batching.py); 0: Faust's stream
    batch_max: int = 2000  # with batch_drain 0: take_events' batch size and window
    batch_within: float = 0.05
    replication_factor: int = 1
    raw_retention_hours: float = 168.0  # how long kraken.raw keeps frames for replays (7 days)
    candle_grace: float = 10.0  # seconds a candle window stays open past its end for late trades
    whale_notional: str = "100000"  # quote-currency notional of a "whale" trade (kraken.metrics alert)
    whale_thresholds: tuple[str, ...] = ()  # per pair overrides: BTC/USD=250000,ETH/USD=100000
    faust_sensor: bool = True
    ingest_metrics_port: int = 6065  # /metrics of a standalone `krakenflow ingest`
    sim_port: int = 8765  # where `krakenflow run` starts the simulator when Kraken is unreachable
    local_broker: str = "auto"  # the broker `krakenflow run` starts: auto (Kafka if Java 17+), kafka, embedded
    # -- secure connections of every Kafka client (app/security.py) --
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    sasl_mechanism: str = "SCRAM-SHA-512"  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_* only)
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""  # CA bundle (PEM) that signed the brokers' certificates; default: the system's
    ssl_certfile: str = ""  # client certificate (PEM), for brokers that require mutual TLS
    ssl_keyfile: str = ""  # its private key (PEM); default: in ssl_certfile
    ssl_check_hostname: bool = True

    # -- topics ------------------------------------------------------------------------------------

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"

    @property
    def raw_topic(self) -> str:
        return self.topic("raw")

    @property
    def kraken_urls(self) -> tuple[str, ...]:
        """``KRAKENFLOW_KRAKEN_URL`` split at commas: the endpoints a connection fails over between."""
        return tuple(u.strip() for u in self.kraken_url.split(",") if u.strip())

    @property
    def kafka_bootstrap(self) -> str:
        """``host:port[,host:port]`` for aiokafka, from the ``kafka://`` URL(s)."""
        servers = []
        for part in self.broker.split(";"):
            url = urlsplit(part.strip() if "://" in part else f"kafka://{part.strip()}")
            servers.append(url.netloc)
        return ",".join(servers)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            name = f"KRAKENFLOW_{f.name.upper()}"
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(name, raw, f.default)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    @property
    def exactly_once(self) -> bool:
        """Whether the book agent commits each batch in a Kafka transaction."""
        if self.processing_guarantee == "auto":
            return self.profile.transactions
        return self.processing_guarantee == "exactly_once"

    @property
    def lock_gen_rule(self) -> str:
        """``KRAKENFLOW_REQUIRE_LOCK_GEN`` as the book session's rule: ``always``, ``seen`` or ``never``."""
        value = self.require_lock_gen.lower()
        if value in _TRUE:
            return "always"
        if value in _FALSE:
            return "never"
        # auto: a worker in the election knows the cluster's ingest stamps every frame; one that is not
        # may be fed by `krakenflow replay` (no lock_gen), so it trusts a partition until the ingest writes it
        return "always" if self.broker_profile == APACHE_KAFKA and self.ingest == "auto" else "seen"

    @property
    def profile(self) -> BrokerProfile:
        """The broker profile (:mod:`app.profile`): what the Kafka clients do on this broker."""
        return profile(self.broker_profile)

    def validate(self) -> None:
        if self.broker_profile not in PROFILES:
            raise SettingsError(f"KRAKENFLOW_BROKER_PROFILE={self.broker_profile!r}; use one of {', '.join(PROFILES)}")
        if self.processing_guarantee not in GUARANTEES:
            raise SettingsError(f"KRAKENFLOW_PROCESSING_GUARANTEE={self.processing_guarantee!r}; use one of "
                                f"{', '.join(GUARANTEES)}")
        if self.processing_guarantee == "exactly_once" and not self.profile.transactions:
            raise SettingsError("KRAKENFLOW_PROCESSING_GUARANTEE=exactly_once needs Kafka transactions, which the "
                                f"{self.broker_profile} broker profile does not have; use at_least_once (or auto), "
                                "or Apache Kafka (KRAKENFLOW_BROKER_PROFILE=apache-kafka)")
        if self.depth not in DEPTHS:
            raise SettingsError(f"KRAKENFLOW_DEPTH={self.depth} is not a Kraken book depth; use one of {DEPTHS}")
        if not self.pairs:
            raise SettingsError("KRAKENFLOW_PAIRS is empty; give pairs like BTC/USD,ETH/USD")
        for pair in self.pairs:
            if "/" not in pair:
                raise SettingsError(f"KRAKENFLOW_PAIRS has {pair!r}; Kraken v2 pairs look like BTC/USD")
        if self.local_broker not in ("auto", "kafka", "embedded"):
            raise SettingsError(f"KRAKENFLOW_LOCAL_BROKER={self.local_broker!r}; use auto, kafka or embedded")
        if self.ingest_linger_ms < 0:
            raise SettingsError(f"KRAKENFLOW_INGEST_LINGER_MS={self.ingest_linger_ms}; use 0 or more milliseconds")
        if not 6.0 <= self.group_session_timeout <= 300.0:
            raise SettingsError(f"KRAKENFLOW_GROUP_SESSION_TIMEOUT={self.group_session_timeout:g}; use 6 to 300 seconds "
                                "(Kafka refuses sessions under its group.min.session.timeout.ms, 6 s by default)")
        if self.ingest not in ("auto", "off"):
            raise SettingsError(f"KRAKENFLOW_INGEST={self.ingest!r}; use auto or off")
        if self.require_lock_gen.lower() not in ("auto", *_TRUE, *_FALSE):
            raise SettingsError(f"KRAKENFLOW_REQUIRE_LOCK_GEN={self.require_lock_gen!r}; use auto, 1 or 0")
        try:
            WhaleThresholds.parse(self.whale_notional, self.whale_thresholds)
        except (ArithmeticError, ValueError):
            raise SettingsError(
                f"KRAKENFLOW_WHALE_NOTIONAL={self.whale_notional!r} / KRAKENFLOW_WHALE_THRESHOLDS="
                f"{','.join(self.whale_thresholds)!r}: give a number, and PAIR=number items like BTC/USD=250000"
            ) from None
        if not self.broker.startswith("kafka://"):
            raise SettingsError(f"KRAKENFLOW_BROKER={self.broker!r}; write it as kafka://host:port")
        self._validate_security()

    def _validate_security(self) -> None:
        protocol = self.security_protocol
        if protocol not in SECURITY_PROTOCOLS:
            raise SettingsError(f"KRAKENFLOW_SECURITY_PROTOCOL={protocol!r}; use one of {', '.join(SECURITY_PROTOCOLS)}")
        if self.sasl_mechanism not in SASL_MECHANISMS:
            raise SettingsError(f"KRAKENFLOW_SASL_MECHANISM={self.sasl_mechanism!r}; use one of "
                                f"{', '.join(SASL_MECHANISMS)}")
        sasl, tls = protocol.startswith("SASL_"), protocol in ("SSL", "SASL_SSL")
        if sasl and not (self.sasl_username and self.sasl_password):
            raise SettingsError(f"KRAKENFLOW_SECURITY_PROTOCOL={protocol} needs KRAKENFLOW_SASL_USERNAME and "
                                "KRAKENFLOW_SASL_PASSWORD; set both to the broker user's credentials")
        if not sasl and (self.sasl_username or self.sasl_password):  # credentials that would go unused
            raise SettingsError(f"KRAKENFLOW_SASL_USERNAME/KRAKENFLOW_SASL_PASSWORD are set but "
                                f"KRAKENFLOW_SECURITY_PROTOCOL={protocol}; use SASL_SSL or SASL_PLAINTEXT")
        files = [f"KRAKENFLOW_SSL_{name.upper()}" for name in ("cafile", "certfile", "keyfile")
                 if getattr(self, f"ssl_{name}")]
        if not tls and files:  # TLS files that would go unused: the connection would not be encrypted
            raise SettingsError(f"{', '.join(files)} set but KRAKENFLOW_SECURITY_PROTOCOL={protocol}; "
                                "use SSL or SASL_SSL")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise SettingsError("KRAKENFLOW_SSL_KEYFILE is set without KRAKENFLOW_SSL_CERTFILE; "
                                "give the client certificate too")


_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def _convert(name: str, raw: str, default: object) -> object:
    try:
        if isinstance(default, bool):
            if raw.lower() not in (*_TRUE, *_FALSE):
                raise ValueError(raw)
            return raw.lower() in _TRUE
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

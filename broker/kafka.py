"""Apache Kafka natively for local runs and tests: KRaft (no ZooKeeper), no Docker, one JVM per node.

Jars: ``org.apache.kafka:kafka_2.13`` and its runtime dependencies, resolved once by ``broker/kafka/pom.xml``
into ``~/.cache/krakenflow/kafka-<ver>`` (or ``$KRAKENFLOW_KAFKA_HOME``). Each node is broker + controller.
A data directory holds ``cluster.id`` and ``node-<id>/`` (``server.properties``, ``logs/``, ``server.log``),
so a cluster started again on it keeps its topics and records.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

# The 3.9 line: Kafka 4.0 removed old protocol versions (KIP-896) that aiokafka still speaks.
# Keep in step with <kafka.version> in broker/kafka/pom.xml.
KAFKA_VERSION = "3.9.2"
HERE = Path(__file__).resolve().parent / "kafka"
POM, LOG4J = HERE / "pom.xml", HERE / "log4j.properties"
READY_TIMEOUT = 60.0


class KafkaStartError(RuntimeError):
    """A node exited, or did not answer metadata requests in time; the message quotes its log."""


def java_binary(which: Callable[[str], str | None] = shutil.which) -> str:
    """The ``java`` on PATH, checked to be 17+ (what Kafka 4 requires: moving past 3.9 needs no new JVM)."""
    fix = "Apache Kafka needs Java 17+: apt-get install -y openjdk-17-jre-headless"
    java = which("java")
    if java is None:
        raise SystemExit(f"java not found on PATH. {fix}")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    # 'openjdk version "17.0.15"', or before Java 9 'java version "1.8.0_392"'
    match = re.search(r'version "(?:1\.)?(\d+)', out.stderr + out.stdout)
    major = int(match.group(1)) if match else 0
    if major < 17:
        raise SystemExit(f"{java} is Java {major or '(version unknown)'}. {fix}")
    return java


def maven_binary(which: Callable[[str], str | None] = shutil.which) -> str:
    mvn = which("mvn")
    if mvn is None:
        raise SystemExit("Apache Kafka needs Maven to fetch its jars once: apt-get install -y maven")
    return mvn


def kafka_unavailable() -> str | None:
    """Why Apache Kafka cannot run here (no Java 17+, or no cached jars and no Maven), or None."""
    try:
        java_binary()
        if not (kafka_home() / "complete").exists():
            maven_binary()
    except SystemExit as exc:
        return str(exc)
    return None


def kafka_home() -> Path:
    return Path(os.environ.get("KRAKENFLOW_KAFKA_HOME") or Path.home() / ".cache/krakenflow" / f"kafka-{KAFKA_VERSION}")


def ensure_jars() -> Path:
    """The directory of Kafka's jars, fetched from Maven Central on first use (a marker file says done)."""
    home = kafka_home()
    libs, marker = home / "libs", home / "complete"
    if marker.exists():
        return libs
    java_binary()  # Maven runs on the JVM: name the missing piece before Maven fails obscurely
    mvn = maven_binary()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs fetching at once must not interleave their copies
        if marker.exists():
            return libs
        shutil.rmtree(libs, ignore_errors=True)  # no marker: an earlier fetch was interrupted, redo it
        print(f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central (once) into {libs} ...", flush=True)
        started = time.monotonic()
        done = subprocess.run([mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                               f"-DoutputDirectory={libs}", "-DincludeScope=runtime"], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"fetching the Kafka jars failed (mvn exit {done.returncode}):\n"
                             f"{(done.stdout + done.stderr)[-4000:]}")
        marker.write_text(KAFKA_VERSION + "\n")
        size = sum(p.stat().st_size for p in libs.iterdir()) / 2**20
        print(f"fetched Apache Kafka {KAFKA_VERSION} jars ({size:.0f} MB) in {time.monotonic() - started:.0f} s",
              flush=True)
    return libs


def new_cluster_id() -> str:
    """A base64url 16-byte UUID (22 chars), as ``StorageTool random-uuid`` prints; free text is rejected."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):  # Kafka skips these too: a leading dash reads as a command-line flag
            return cid


def free_ports(count: int, host: str = "127.0.0.1", taken: Collection[int] = ()) -> list[int]:
    """Distinct free ports not in ``taken``. All stay bound until all are picked: picked one at a time the
    kernel may return one twice, and a broker and controller listener on one port fail to start."""
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < count:
            sockets.append(s := socket.socket())
            s.bind((host, 0))
            if s.getsockname()[1] in taken:
                sockets.pop().close()
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def broker_ids(bootstrap: str) -> set[int]:
    """The broker ids (registered, unfenced) a node lists in a metadata response. Asked from a thread of
    its own: ``asyncio.run`` on the caller's thread fails under a running loop and, on the main thread,
    resets the event loop a test framework has set up."""
    from aiokafka.admin import AIOKafkaAdminClient  # imported late: only needed once a JVM runs

    async def ask() -> set[int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            return {int(b["node_id"]) for b in (await admin.describe_cluster())["brokers"]}
        finally:
            await admin.close()

    with ThreadPoolExecutor(1, thread_name_prefix="kafka-probe") as pool:
        return pool.submit(asyncio.run, ask()).result()


@dataclass
class KafkaNode:
    """One JVM, broker and KRaft controller in one process, with its own ports and directory."""

    node_id: int
    port: int
    controller_port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    extra_port: int | None = None  # the cluster's extra listener, if it has one

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log yet)"


@dataclass
class KafkaCluster:
    """The nodes :func:`start_kafka` started; :meth:`close` (or leaving a ``with``) stops them."""

    data: Path
    host: str
    cluster_id: str
    nodes: list[KafkaNode]
    java: str
    libs: Path
    heap: str = "512m"
    settings: dict[str, Any] = field(default_factory=dict)
    #: a second client listener named after its security protocol (``SSL``, ``SASL_PLAINTEXT``, ``SASL_SSL``);
    #: brokers and controllers keep talking PLAINTEXT among themselves
    extra_listener: str | None = None
    #: ``StorageTool format --add-scram`` values: SCRAM users live in the KRaft metadata from the format on
    scram: tuple[str, ...] = ()
    #: nodes in a session of their own: a signal to the starter's process group does not reach them, so
    #: the starter (``krakenflow run``) can stop them last, after the clients that need them
    own_session: bool = False

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.host}:{n.port}" for n in self.nodes)

    @property
    def extra_bootstrap(self) -> str:
        """``host:port`` list of the extra listener."""
        return ",".join(f"{self.host}:{n.extra_port}" for n in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def write_config(self, node: KafkaNode) -> Path:
        """``server.properties``, written at every start so ports may change between runs."""
        n, h = len(self.nodes), self.host
        extra = f",{self.extra_listener}://{h}:{node.extra_port}" if self.extra_listener else ""
        props: dict[str, Any] = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": ",".join(f"{m.node_id}@{h}:{m.controller_port}" for m in self.nodes),
            "listeners": f"PLAINTEXT://{h}:{node.port},CONTROLLER://{h}:{node.controller_port}{extra}",
            "advertised.listeners": f"PLAINTEXT://{h}:{node.port}{extra}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
                                              + (f",{self.extra_listener}:{self.extra_listener}" if extra else ""),
            "log.dirs": node.data_dir / "logs",
            "num.partitions": 1,
            "default.replication.factor": min(3, n),
            "offsets.topic.replication.factor": min(3, n),
            "transaction.state.log.replication.factor": min(3, n),
            "transaction.state.log.min.isr": min(2, n),
            "min.insync.replicas": 2 if n >= 3 else 1,  # acks=all then survives one node down
            # a transaction a killed worker left open is aborted within a second of its timeout, not ten:
            # the next owner of its partitions waits for that (agents/transactions.py)
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": 1000,
            "group.initial.rebalance.delay.ms": 0,  # local consumers join one at a time; no 3 s wait each
            "auto.create.topics.enable": "true",  # Faust creates its topics through the admin API anyway
            **self.settings,
        }
        node.data_dir.mkdir(parents=True, exist_ok=True)
        config = node.data_dir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return config

    def java_cmd(self, main: str, *args: str) -> list[str]:
        # Kafka's own launch flags (kafka-run-class.sh, kafka-server-start.sh): a fixed heap and G1 aiming at
        # 20 ms pauses; with a growing heap the young generation stayed small and the broker paused ~11 ms
        # every 0.5-1 s under the 1k frames/s bench, twice as often as with these (bench/pipeline.py)
        return [self.java, f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
                f"-Dlog4j.configuration={LOG4J.as_uri()}", "-cp", f"{self.libs}/*", main, *args]

    def format_storage(self) -> None:
        """Format each node's log dir once; a formatted one (``meta.properties``) keeps its data."""
        todo = [n for n in self.nodes if not (n.data_dir / "logs" / "meta.properties").exists()]
        procs = [(n, subprocess.Popen(  # in parallel: each format is a JVM start of a second or so
            self.java_cmd("kafka.tools.StorageTool", "format", "--ignore-formatted", "-t", self.cluster_id,
                          "-c", str(self.write_config(n)), *(a for s in self.scram for a in ("--add-scram", s))),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)) for n in todo]
        for node, proc in procs:
            out = proc.communicate(timeout=120)[0].decode(errors="replace").splitlines()
            if proc.returncode != 0:  # the exception's message and first frames say what is wrong
                raise KafkaStartError(f"formatting Kafka node {node.node_id} failed:\n" + "\n".join(out[:12]))

    def launch(self, node: KafkaNode) -> None:
        ports = [p for p in (node.port, node.controller_port, node.extra_port) if p is not None]
        if any(port_open(self.host, p) for p in ports):
            raise KafkaStartError(f"one of {self.host}:{'/'.join(map(str, ports))} (Kafka node {node.node_id}) "
                                  "is in use; stop what listens there or choose other ports")
        config = self.write_config(node)
        node.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(node.log_path, "ab") as out:  # the child keeps its own copy of the descriptor
            # by default our process group: a terminal's Ctrl-C reaches the JVMs as well
            node.process = subprocess.Popen(self.java_cmd("kafka.Kafka", str(config)), stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=self.own_session)

    def serving(self, node: KafkaNode) -> bool:
        """Whether the node answers a metadata request that lists every running node as a broker."""
        if not port_open(self.host, node.port):
            return False
        try:
            return {n.node_id for n in self.nodes if n.alive} <= broker_ids(f"{self.host}:{node.port}")
        except Exception:
            return False  # listening, not serving metadata yet: still catching up with the quorum

    def wait_ready(self, nodes: list[KafkaNode], timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        for node in nodes:
            while not self.serving(node):
                if not node.alive or time.monotonic() > deadline:
                    why = f"not ready within {timeout:.0f} s" if node.alive else (
                        f"exited with {node.process.returncode if node.process else None}")
                    raise KafkaStartError(f"Kafka node {node.node_id} {why}; {node.log_path} ends:\n{node.log_tail()}")
                time.sleep(0.1)  # polling a child JVM's port from sync code

    def stop(self, node_id: int | None = None, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Signal every node (or one), wait, SIGKILL what still runs after ``timeout`` s. Stopping all of
        3 nodes takes ~6 s: the quorum leader waits 5 s for a successor that is stopping too."""
        targets = [n for n in self.nodes if node_id in (None, n.node_id) and n.process is not None]
        for node in targets:
            if node.alive and node.process is not None:
                node.process.send_signal(sig)  # all first, then wait: the shutdowns overlap
        deadline = time.monotonic() + timeout
        for node in targets:
            assert node.process is not None
            try:
                node.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
            node.process = None

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, a crash: the controller notices after ``broker.session.timeout.ms`` (9 s)."""
        self.stop(node_id, signal.SIGKILL)

    def restart(self, node_id: int) -> None:
        """Stop one node if it runs and start it on its ports and data; after a :meth:`kill` this waits out
        the dead incarnation's broker session (9 s), until which the controller refuses the new one."""
        self.stop(node_id)
        node = self.node(node_id)
        self.launch(node)
        self.wait_ready([node])

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> KafkaCluster:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def start_kafka(data: Path | str, nodes: int = 1, host: str = "127.0.0.1", ports: list[int] | None = None,
                cluster_id: str | None = None, heap: str = "512m", log: Path | None = None,
                controller_ports: list[int] | None = None, settings: dict[str, Any] | None = None,
                extra_listener: str | None = None, scram: Sequence[str] = (),
                own_session: bool = False) -> KafkaCluster:
    """Start ``nodes`` broker+controller nodes on ``host`` and return once every one answers metadata.

    ``data`` is formatted on first use and reused after; its cluster id is kept in ``data/cluster.id``.
    Ports default to free ones. Node logs go to ``data/node-<id>/server.log``, or ``log/kafka-node-<id>.log``
    when ``log`` (a directory) is given. ``settings`` add to or override the generated server.properties.
    ``extra_listener`` (a security protocol, e.g. ``SASL_SSL``) adds a client listener on a free port per
    node (:attr:`KafkaCluster.extra_bootstrap`); its TLS/SASL properties (``listener.name.sasl_ssl.*``,
    ``ssl.keystore.*``, ``sasl.enabled.mechanisms``) come in ``settings``. ``scram`` values
    (``SCRAM-SHA-512=[name=alice,password=secret]``) create SCRAM users when the storage is formatted.
    """
    libs, java = ensure_jars(), java_binary()
    data = Path(data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    id_file = data / "cluster.id"
    if cluster_id is None:
        cluster_id = id_file.read_text().strip() if id_file.exists() else new_cluster_id()
    id_file.write_text(cluster_id + "\n")
    ports = ports or free_ports(nodes, host)
    controller_ports = controller_ports or free_ports(nodes, host, taken=ports)
    if len(ports) != nodes or len(controller_ports) != nodes:
        raise ValueError(f"{nodes} node(s) need {nodes} port(s) each, got {ports} and {controller_ports}")
    extra_ports = free_ports(nodes, host, taken=ports + controller_ports) if extra_listener else []
    members = [KafkaNode(i, ports[i - 1], controller_ports[i - 1], data / f"node-{i}",
                         log / f"kafka-node-{i}.log" if log else data / f"node-{i}" / "server.log",
                         extra_port=extra_ports[i - 1] if extra_ports else None)
               for i in range(1, nodes + 1)]
    cluster = KafkaCluster(data, host, cluster_id, members, java, libs, heap, dict(settings or {}), extra_listener,
                           tuple(scram), own_session)
    try:
        cluster.format_storage()
        for node in members:
            cluster.launch(node)
        cluster.wait_ready(members)
    except BaseException:
        cluster.stop(timeout=10)  # a failed or interrupted start leaves no JVM behind
        raise
    return cluster


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM (a process manager, `kill`) stops as cleanly as Ctrl-C


def run_kafka(nodes: int = 1, data: Path | None = None, port: int = 9092) -> int:
    """Run a cluster in the foreground until Ctrl-C or SIGTERM, for ``krakenflow broker --kafka``.

    Node ``i`` listens on ``port + i - 1``; data defaults to ``$KRAKENFLOW_DATA_DIR/kafka`` (``var/kafka``).
    """
    data = Path(data or Path(os.environ.get("KRAKENFLOW_DATA_DIR", "var")) / "kafka").resolve()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    cluster: KafkaCluster | None = None
    try:
        cluster = start_kafka(data, nodes, ports=[port + i for i in range(nodes)])
        print(f"Apache Kafka {KAFKA_VERSION} on {cluster.bootstrap} (KRaft, {nodes} node(s), data in {data}); "
              "Ctrl-C stops it", flush=True)
        while all(n.alive for n in cluster.nodes):
            time.sleep(0.5)  # supervising child JVMs from sync code
        dead = next(n for n in cluster.nodes if not n.alive)
        print(f"Kafka node {dead.node_id} exited; {dead.log_path} ends:\n{dead.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except KafkaStartError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        if cluster is not None:
            cluster.close()
        signal.signal(signal.SIGTERM, previous)

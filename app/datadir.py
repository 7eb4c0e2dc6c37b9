"""A worker's data directory: chosen the Faust way, held by one process, checked against the cluster.

* **Where.** ``faust --datadir DIR`` wins; otherwise ``<KRAKENFLOW_DATA_DIR>/worker-<web port>``, the
  web port being the final one (``--web-port`` or ``KRAKENFLOW_WEB_PORT``).
* **One process.** The directory is locked (``flock``) while the worker runs; a second worker pointed at
  it stops with an error naming the holder, before RocksDB is opened.
* **Names its worker.** ``<datadir>/worker-id`` holds the worker's name, made once: the book agent's
  transactional id (``agents/transactions.py``), the same after a restart.
* **Belongs to this cluster.** Local RocksDB state left by an earlier broker (a fresh embedded broker, a
  re-created cluster) holds changelog offsets beyond what the changelog topics now hold; Faust would
  crash in recovery (``ConsistencyError``). Such state is moved aside to ``<datadir>/stale-<time>-<pid>/``,
  logged with the reason, and the tables rebuild from the changelog.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger("krakenflow.datadir")

LOCK_NAME = ".krakenflow.lock"
#: the file that names the worker of a data directory (its transactional id, agents/transactions.py)
WORKER_ID_NAME = "worker-id"
#: The key under which Faust keeps a RocksDB partition's persisted changelog offset.
OFFSET_KEY = b"__faust\0offset__"


class DataDirInUse(RuntimeError):
    """Another worker holds the data directory."""


def worker_datadir(flag: str | None, data_dir: Path, web_port: int) -> Path:
    return Path(flag) if flag else data_dir / f"worker-{web_port}"


def lock(datadir: Path) -> IO[str]:
    """Hold ``datadir`` for this process (until the returned file is closed or the process ends)."""
    datadir.mkdir(parents=True, exist_ok=True)
    handle = open(datadir / LOCK_NAME, "a+")  # noqa: SIM115 - held for the process's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise DataDirInUse(
            f"the data directory {datadir} is in use by {holder}; two workers cannot share one. Give this "
            f"worker its own: faust --datadir DIR -A app worker --web-port PORT (or stop the other one)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(process_label(os.getpid()) + "\n")
    handle.flush()
    return handle


def worker_id(datadir: Path) -> str:
    """The name of the worker that holds ``datadir``, made once and kept there: a worker restarted on its
    data directory takes its transactional id back, which aborts a transaction its killed run left open,
    and two data directories never share one."""
    path = datadir / WORKER_ID_NAME
    try:
        name = path.read_text().strip()
    except FileNotFoundError:
        name = ""
    if not name:
        name = uuid.uuid4().hex[:12]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(name + "\n")
        tmp.replace(path)  # atomic: a kill mid-write leaves no empty name
    return name


def process_label(pid: int) -> str:
    """``pid N (its command line)``, as error messages name another process (Linux /proc)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        args = []
    return f"pid {pid} ({' '.join(args)})"


def persisted_offsets(tabledir: Path, app_id: str) -> dict[TopicPartition, int]:
    """Each local RocksDB partition's persisted changelog offset, by changelog topic partition."""
    import rocksdict

    offsets: dict[TopicPartition, int] = {}
    for db in sorted(tabledir.glob("*.db")):
        table, _, partition = db.name[:-3].rpartition("-")
        if not partition.isdigit():
            continue
        try:
            store = rocksdict.Rdict(str(db), options=rocksdict.Options(raw_mode=True),
                                    access_type=rocksdict.AccessType.read_only())
        except Exception as exc:  # unreadable local state is stale state
            log.warning("cannot read %s (%s)", db, exc)
            offsets[TopicPartition(f"{app_id}-{table}-changelog", int(partition))] = 1 << 62
            continue
        try:
            value = store.get(OFFSET_KEY)
        finally:
            store.close()
        if value is not None:
            offsets[TopicPartition(f"{app_id}-{table}-changelog", int(partition))] = int(value)
    return offsets


async def stale_reason(bootstrap: str, tabledir: Path, app_id: str,
                       config: Mapping[str, Any] | None = None) -> str | None:
    """Why the local tables in ``tabledir`` do not belong to the cluster at ``bootstrap`` (None: they do).
    ``config``: more consumer settings (:func:`app.security.kafka_client_config`)."""
    offsets = persisted_offsets(tabledir, app_id)
    if not offsets:
        return None
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                client_id="krakenflow-datadir-check", **(config or {}))
    await consumer.start()
    try:
        topics = await consumer.topics()
        missing = sorted({tp.topic for tp in offsets if tp.topic not in topics})
        if missing:
            return f"changelog topics {', '.join(missing)} do not exist on this cluster"
        ends = await consumer.end_offsets(list(offsets))
    finally:
        await consumer.stop()
    for tp, offset in sorted(offsets.items()):
        if offset >= ends[tp]:
            return (f"local state of {tp.topic}[{tp.partition}] is at offset {offset} but the changelog ends at "
                    f"{ends[tp] - 1}")
    return None


def move_aside(tabledir: Path, datadir: Path, reason: str) -> Path:
    target = datadir / f"stale-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    shutil.move(str(tabledir), str(target))
    log.warning("local table state does not belong to this cluster (%s): moved it to %s; the tables rebuild "
                "from their changelogs", reason, target)
    return target

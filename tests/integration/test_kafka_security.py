"""Secure connections on a real Apache Kafka: a SASL_SSL listener (certificates made here with openssl,
SASL PLAIN and SCRAM-SHA-512 users) beside the node's PLAINTEXT one, and krakenflow's clients built
from ``Settings`` (app/security.py): the admin client of ``ensure_topics``, aiokafka producers and
consumers, Faust's producer and consumer settings, and ``krakenflow tail`` as a process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

from app.security import faust_credentials, kafka_client_config
from app.settings import Settings
from app.topics import TOPICS, ensure_topics
from broker.kafka import KafkaCluster, start_kafka
from tests.processes import ROOT

pytestmark = pytest.mark.integration

TIMEOUT = 30.0  # bounds every client call: a refused or stuck connection fails the test, never hangs it
#: one user per mechanism, so a SCRAM login cannot succeed through the PLAIN user list or the reverse
USERS = {"PLAIN": ("alice", "alice-secret"), "SCRAM-SHA-512": ("bob", "bob-secret")}
MECHANISMS = sorted(USERS)


@dataclass(frozen=True)
class SecureKafka:
    cluster: KafkaCluster
    ca: Path  # the test CA (PEM) that signed the broker's certificate

    def settings(self, mechanism: str, password: str | None = None, **overrides: object) -> Settings:
        user, secret = USERS[mechanism]
        settings = Settings(broker=f"kafka://{self.cluster.extra_bootstrap}", security_protocol="SASL_SSL",
                            sasl_mechanism=mechanism, sasl_username=user, sasl_password=password or secret,
                            ssl_cafile=str(self.ca), topic_prefix=f"sec-{uuid.uuid4().hex[:8]}",
                            app_id=f"sec-{uuid.uuid4().hex[:8]}", raw_partitions=1, output_partitions=1)
        settings.validate()
        return replace(settings, **overrides)  # type: ignore[arg-type]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path, keystore_password: str) -> tuple[Path, Path]:
    """A CA and a server certificate it signs for 127.0.0.1/localhost; returns (CA PEM, server PKCS12)."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=krakenflow test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=folder)
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                                       "keyUsage=critical,digitalSignature,keyEncipherment\n"
                                       "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "1",
            "-days", "2", "-extfile", "server.ext", "-out", "server.pem", cwd=folder)
    openssl("pkcs12", "-export", "-in", "server.pem", "-inkey", "server.key", "-certfile", "ca.pem",
            "-name", "kafka", "-out", "server.p12", "-passout", f"pass:{keystore_password}", cwd=folder)
    return folder / "ca.pem", folder / "server.p12"


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """One node: PLAINTEXT for the controller and inter-broker traffic, SASL_SSL for the clients."""
    folder = tmp_path_factory.mktemp("secure-kafka")
    ca, keystore = make_certificates(folder / "certs", "keystore-secret")
    plain_users = " ".join(f'user_{u}="{p}"' for m, (u, p) in USERS.items() if m == "PLAIN")
    cluster = start_kafka(folder / "kafka", log=folder, extra_listener="SASL_SSL", settings={
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": keystore,
        "ssl.keystore.password": "keystore-secret",
        "ssl.key.password": "keystore-secret",
        "sasl.enabled.mechanisms": ",".join(MECHANISMS),
        "listener.name.sasl_ssl.plain.sasl.jaas.config":
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    }, scram=[f"SCRAM-SHA-512=[name={u},password={p}]" for m, (u, p) in USERS.items() if m.startswith("SCRAM")])
    try:
        yield SecureKafka(cluster, ca)
    finally:
        cluster.close()
        assert not any(n.alive for n in cluster.nodes)


async def plaintext_topics(cluster: KafkaCluster) -> set[str]:
    """The topics as the PLAINTEXT listener lists them: a view independent of the clients under test."""
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        await admin.start()
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def produce(settings: Settings, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                **kafka_client_config(settings))
    try:
        await asyncio.wait_for(producer.start(), TIMEOUT)
        await asyncio.wait_for(producer.send_and_wait(topic, value, key=b"BTC/USD"), TIMEOUT)
    finally:
        await producer.stop()


async def read_first(config: dict[str, object], bootstrap: str, topic: str) -> bytes | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **config)  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(consumer.start(), TIMEOUT)
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        batch = await asyncio.wait_for(consumer.getmany(tp, timeout_ms=int(TIMEOUT * 1000)), TIMEOUT + 5)
        return batch[tp][0].value if batch.get(tp) else None
    finally:
        await consumer.stop()


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_topics_records_and_the_tail_command_over_sasl_ssl(secure_kafka: SecureKafka, mechanism: str) -> None:
    settings = secure_kafka.settings(mechanism)
    await asyncio.wait_for(ensure_topics(settings), TIMEOUT)
    assert {settings.topic(spec.suffix) for spec in TOPICS} <= await plaintext_topics(secure_kafka.cluster)

    topic = settings.topic("book.deltas")
    record = orjson.dumps({"symbol": "BTC/USD", "via": f"sasl-ssl-{mechanism}"})
    await produce(settings, topic, record)
    assert await read_first(kafka_client_config(settings), settings.kafka_bootstrap, topic) == record

    # the CLI end to end: `krakenflow tail` configured by the environment alone
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRAKENFLOW_")} | {
        "KRAKENFLOW_BROKER": settings.broker, "KRAKENFLOW_TOPIC_PREFIX": settings.topic_prefix,
        "KRAKENFLOW_SECURITY_PROTOCOL": "SASL_SSL", "KRAKENFLOW_SASL_MECHANISM": mechanism,
        "KRAKENFLOW_SASL_USERNAME": settings.sasl_username, "KRAKENFLOW_SASL_PASSWORD": settings.sasl_password,
        "KRAKENFLOW_SSL_CAFILE": settings.ssl_cafile,
    }
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "cli.main", "tail", "book.deltas", "--count", "1", "--from-beginning"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f'"via":"sasl-ssl-{mechanism}"' in done.stdout


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_a_wrong_password_is_refused(secure_kafka: SecureKafka, mechanism: str,
                                           caplog: pytest.LogCaptureFixture) -> None:
    settings = secure_kafka.settings(mechanism, password="not-the-password")
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(ensure_topics(settings), TIMEOUT)
    assert "SaslAuthenticationFailed" in caplog.text  # refused for the password, not for TLS or the network
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        await produce(settings, settings.topic("book.deltas"), b"{}")
    assert "SaslAuthenticationFailed" in caplog.text


async def test_an_unknown_certificate_authority_is_refused(secure_kafka: SecureKafka,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    settings = secure_kafka.settings("SCRAM-SHA-512", ssl_cafile="")  # the system's CAs: the test CA is not one
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(ensure_topics(settings), TIMEOUT)
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_faust_connects_with_its_broker_credentials(secure_kafka: SecureKafka, mechanism: str,
                                                          tmp_path: Path) -> None:
    import faust
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from app.factory import create_app

    settings = secure_kafka.settings(mechanism, data_dir=tmp_path)
    await asyncio.wait_for(ensure_topics(settings), TIMEOUT)
    app = create_app(settings)
    credentials = app.conf.broker_credentials
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.protocol.value, credentials.mechanism.value) == ("SASL_SSL", mechanism)
    assert isinstance(credentials.ssl_context, ssl.SSLContext)
    assert type(faust_credentials(settings)) is type(credentials)

    # Faust's own producer (the transport the app's broker URL picks), started and writing a record
    topic = settings.topic("book.events")
    producer = app.producer
    await asyncio.wait_for(producer.start(), TIMEOUT)
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, b"BTC/USD", b'{"via":"faust"}', partition=0,
                                                      timestamp=None, headers=None), TIMEOUT)
    finally:
        await producer.stop()
    # Faust's consumers get the same settings from the same mapping: read the record back with them
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == mechanism
    assert await read_first(auth, settings.kafka_bootstrap, topic) == b'{"via":"faust"}'

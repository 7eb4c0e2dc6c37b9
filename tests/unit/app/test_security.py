"""Secure-connection settings: parsed from the environment, bad combinations named with their fix, and
the aiokafka and Faust client settings they give (app/security.py). The broker side is in
tests/integration/test_kafka_security.py."""

from __future__ import annotations

import ssl

import faust
import pytest

from app.security import faust_credentials, kafka_client_config
from app.settings import Settings, SettingsError

pytestmark = pytest.mark.unit

SASL = {"KRAKENFLOW_SECURITY_PROTOCOL": "SASL_SSL", "KRAKENFLOW_SASL_USERNAME": "alice",
        "KRAKENFLOW_SASL_PASSWORD": "alice-secret"}


def test_plaintext_by_default_adds_nothing() -> None:
    settings = Settings.from_env({})
    assert settings.security_protocol == "PLAINTEXT"
    assert kafka_client_config(settings) == {} and faust_credentials(settings) is None


def test_sasl_ssl_from_the_environment() -> None:
    settings = Settings.from_env({**SASL, "KRAKENFLOW_SASL_MECHANISM": "PLAIN", "KRAKENFLOW_SSL_CHECK_HOSTNAME": "0"})
    config = kafka_client_config(settings)
    context = config.pop("ssl_context")
    assert config == {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_plain_username": "alice",
                      "sasl_plain_password": "alice-secret"}
    assert isinstance(context, ssl.SSLContext) and context.check_hostname is False
    assert context.verify_mode == ssl.CERT_REQUIRED  # the certificate is still verified


def test_faust_credentials_carry_the_mechanism() -> None:
    scram = faust_credentials(Settings.from_env(SASL))  # SCRAM-SHA-512 by default
    assert isinstance(scram, faust.SASLCredentials)
    assert (scram.protocol.value, scram.mechanism.value, scram.username) == ("SASL_SSL", "SCRAM-SHA-512", "alice")
    assert isinstance(scram.ssl_context, ssl.SSLContext) and scram.ssl_context.check_hostname is True
    plain = faust_credentials(Settings.from_env({**SASL, "KRAKENFLOW_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}))
    assert isinstance(plain, faust.SASLCredentials)
    assert plain.protocol.value == "SASL_PLAINTEXT" and plain.ssl_context is None
    tls = faust_credentials(Settings.from_env({"KRAKENFLOW_SECURITY_PROTOCOL": "SSL"}))
    assert isinstance(tls, faust.SSLCredentials) and isinstance(tls.context, ssl.SSLContext)
    assert "sasl_mechanism" not in kafka_client_config(Settings.from_env({"KRAKENFLOW_SECURITY_PROTOCOL": "SSL"}))


@pytest.mark.parametrize(("env", "message"), [
    ({"KRAKENFLOW_SECURITY_PROTOCOL": "TLS"},
     "KRAKENFLOW_SECURITY_PROTOCOL='TLS'; use one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    ({**SASL, "KRAKENFLOW_SASL_MECHANISM": "SCRAM-SHA-1"},
     "KRAKENFLOW_SASL_MECHANISM='SCRAM-SHA-1'; use one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ({**SASL, "KRAKENFLOW_SASL_PASSWORD": ""},
     "KRAKENFLOW_SECURITY_PROTOCOL=SASL_SSL needs KRAKENFLOW_SASL_USERNAME and KRAKENFLOW_SASL_PASSWORD"),
    ({"KRAKENFLOW_SASL_USERNAME": "alice", "KRAKENFLOW_SASL_PASSWORD": "x"},
     "KRAKENFLOW_SECURITY_PROTOCOL=PLAINTEXT; use SASL_SSL or SASL_PLAINTEXT"),
    ({"KRAKENFLOW_SSL_CAFILE": "ca.pem"}, "KRAKENFLOW_SSL_CAFILE set but KRAKENFLOW_SECURITY_PROTOCOL=PLAINTEXT"),
    ({"KRAKENFLOW_SECURITY_PROTOCOL": "SSL", "KRAKENFLOW_SSL_KEYFILE": "key.pem"},
     "KRAKENFLOW_SSL_KEYFILE is set without KRAKENFLOW_SSL_CERTFILE"),
    ({"KRAKENFLOW_SECURITY_PROTOCOL": "SSL", "KRAKENFLOW_SSL_CHECK_HOSTNAME": "maybe"},
     "KRAKENFLOW_SSL_CHECK_HOSTNAME='maybe' is not a valid bool"),
])
def test_bad_security_settings_name_the_variable_and_the_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_an_unreadable_ca_file_names_the_variable() -> None:
    settings = Settings.from_env({**SASL, "KRAKENFLOW_SSL_CAFILE": "/nonexistent/ca.pem"})
    with pytest.raises(SettingsError, match="cannot load KRAKENFLOW_SSL_CAFILE='/nonexistent/ca.pem'"):
        kafka_client_config(settings)

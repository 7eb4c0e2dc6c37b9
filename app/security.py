"""Secure connections: the TLS and SASL settings of every Kafka client, from :class:`~app.settings.Settings`.

:func:`kafka_client_config` gives the aiokafka keyword arguments (the ingest's clients, the batch writer,
catch-up reads, the admin client, ``krakenflow replay`` and ``tail``); :func:`faust_credentials` gives
Faust's ``broker_credentials``, which Faust's aiokafka driver turns into the same arguments for its
producer and consumers (``credentials_to_aiokafka_auth``; SCRAM-SHA-256/512 included, as
``SASLCredentials(mechanism=...)``). With ``PLAINTEXT`` (the default) both add nothing.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from aiokafka.helpers import create_ssl_context

from app.settings import Settings, SettingsError

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The client TLS context: the CA (or the system's), the client certificate for mutual TLS if given."""
    try:
        context = create_ssl_context(cafile=settings.ssl_cafile or None, certfile=settings.ssl_certfile or None,
                                     keyfile=settings.ssl_keyfile or None)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"cannot load KRAKENFLOW_SSL_CAFILE={settings.ssl_cafile!r} / KRAKENFLOW_SSL_CERTFILE="
                            f"{settings.ssl_certfile!r} / KRAKENFLOW_SSL_KEYFILE={settings.ssl_keyfile!r} ({exc}); "
                            "give readable PEM files") from None
    context.check_hostname = settings.ssl_check_hostname  # the certificate itself is verified either way
    return context


def kafka_client_config(settings: Settings) -> dict[str, Any]:
    """aiokafka client keyword arguments for ``settings.security_protocol`` ({} for PLAINTEXT)."""
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return {}
    config: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        config["ssl_context"] = ssl_context(settings)
    if protocol.startswith("SASL_"):
        config.update(sasl_mechanism=settings.sasl_mechanism, sasl_plain_username=settings.sasl_username,
                      sasl_plain_password=settings.sasl_password)
    return config


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for ``settings`` (None for PLAINTEXT)."""
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    import faust  # here: the aiokafka clients above need no Faust

    context = ssl_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    # with an ssl_context the protocol is SASL_SSL, without it SASL_PLAINTEXT
    return faust.SASLCredentials(username=settings.sasl_username, password=settings.sasl_password,
                                 ssl_context=context, mechanism=settings.sasl_mechanism)

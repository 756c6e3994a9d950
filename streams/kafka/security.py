"""How every Kafka client of the product authenticates: one setting, three client APIs.

The worker talks to Kafka through three libraries (librdkafka via
confluent-kafka, aiokafka, and Faust on top of aiokafka); each spells TLS and
SASL differently. The settings (``STREAMS_KAFKA_SECURITY_PROTOCOL``,
``STREAMS_KAFKA_SASL_*``, ``STREAMS_KAFKA_SSL_*``) are translated here,
once, so no client can be left talking plaintext by mistake:

- :func:`librdkafka_config`: keys for confluent-kafka's producers, consumers
  and admin clients;
- :func:`aiokafka_kwargs`: keyword arguments of ``AIOKafkaConsumer``;
- :func:`faust_credentials`: Faust's ``broker_credentials``.

The password only ever leaves :class:`~streams.config.Secret` inside these
client configurations; nothing here logs or formats it.
"""

from __future__ import annotations

import ssl
from typing import Any

from streams.config import Settings
from streams.errors import ConfigError


def uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def librdkafka_config(settings: Settings) -> dict[str, str]:
    """The security keys of a confluent-kafka client (empty for PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    config = {"security.protocol": protocol.lower()}
    if uses_sasl(settings):
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = settings.kafka_sasl_password.reveal()
    if uses_tls(settings) and settings.kafka_ssl_cafile:
        config["ssl.ca.location"] = settings.kafka_ssl_cafile
    if uses_tls(settings) and settings.kafka_ssl_certfile:
        config["ssl.certificate.location"] = settings.kafka_ssl_certfile
        config["ssl.key.location"] = settings.kafka_ssl_keyfile
        if settings.kafka_ssl_key_password:
            config["ssl.key.password"] = settings.kafka_ssl_key_password.reveal()
    return config


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of the aiokafka clients (verifying, with the configured CA)."""
    if not uses_tls(settings):
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if settings.kafka_ssl_certfile:
        try:
            context.load_cert_chain(
                settings.kafka_ssl_certfile,
                settings.kafka_ssl_keyfile,
                password=settings.kafka_ssl_key_password.reveal() or None,
            )
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                "cannot load the Kafka client certificate from STREAMS_KAFKA_SSL_CERTFILE and "
                f"STREAMS_KAFKA_SSL_KEYFILE ({exc.__class__.__name__}: {exc}); check that the "
                "key matches the certificate and STREAMS_KAFKA_SSL_KEY_PASSWORD"
            ) from None
    return context


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """The security keyword arguments of an ``AIOKafkaConsumer``."""
    kwargs: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if uses_sasl(settings):
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = settings.kafka_sasl_password.reveal()
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    return kwargs


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials``: None for PLAINTEXT."""
    import faust

    context = ssl_context(settings)
    if uses_sasl(settings):
        # Faust picks SASL_SSL over SASL_PLAINTEXT by whether a context is given.
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.reveal(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None

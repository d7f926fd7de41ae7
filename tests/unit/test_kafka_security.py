"""TLS and SASL settings reach every Kafka client the hub makes: kafka-python's
producers, consumers and admin client (relay, inbox, dead letters, readiness) and
faust's (the worker). Half a configuration is refused at start, naming the setting,
and never echoes the password."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from pydantic import ValidationError

from services.kafka.common import client_options, producer_options
from services.settings import Settings
from services.worker import broker_urls, build_worker
from tests.tls_certs import make_certificates

PASSWORD = "s3cret-not-for-logs"


def _sasl_ssl(tmp_path: Path, **more: object) -> Settings:
    certificates = make_certificates(tmp_path / "tls")
    return Settings(
        var_dir=tmp_path / "var",
        kafka_bootstrap="kafka-1:9093,kafka-2:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="hub",
        kafka_sasl_password=PASSWORD,
        kafka_ssl_cafile=certificates.ca_file,
        **more,
    )


def test_kafka_python_clients_get_tls_and_sasl(tmp_path: Path) -> None:
    settings = _sasl_ssl(tmp_path)
    options = client_options(settings, "relay")
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "hub"
    assert options["sasl_plain_password"] == PASSWORD
    assert options["ssl_cafile"] == str(settings.kafka_ssl_cafile)
    assert options["ssl_check_hostname"] is True
    # Every option is one kafka-python knows (it refuses unknown ones, but only when a
    # client is built, which needs a broker).
    for client in (KafkaProducer, KafkaConsumer, KafkaAdminClient):
        unknown = set(client_options(settings, "x")) - set(client.DEFAULT_CONFIG)
        assert not unknown, (client.__name__, unknown)
    assert not set(producer_options(settings, "x")) - set(KafkaProducer.DEFAULT_CONFIG)


def test_plaintext_stays_the_default_and_sends_no_credentials() -> None:
    options = client_options(Settings(kafka_bootstrap="k:9092"), "inbox")
    assert options["security_protocol"] == "PLAINTEXT"
    assert not {k for k in options if k.startswith(("sasl_", "ssl_"))}


def test_the_faust_worker_gets_the_same_tls_and_sasl(tmp_path: Path) -> None:
    settings = _sasl_ssl(tmp_path, kafka_ssl_check_hostname=False)
    app = build_worker(settings)
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("hub", PASSWORD)
    context: ssl.SSLContext = auth["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is False
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "test CA"),),)]
    assert [str(url) for url in app.conf.broker] == ["kafka://kafka-1:9093", "kafka://kafka-2:9093"]
    assert broker_urls(settings) == ["kafka://kafka-1:9093", "kafka://kafka-2:9093"]


def test_the_faust_worker_gets_tls_alone(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path / "tls")
    settings = Settings(
        var_dir=tmp_path / "var",
        kafka_bootstrap="k:9093",
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=certificates.ca_file,
        # mutual TLS: the client's own certificate (here: the test server's)
        kafka_ssl_certfile=certificates.server_cert,
        kafka_ssl_keyfile=certificates.server_key,
    )
    auth = credentials_to_aiokafka_auth(build_worker(settings).conf.broker_credentials)
    assert auth["security_protocol"] == "SSL"
    assert auth["ssl_context"].check_hostname is True
    options = client_options(settings, "relay")
    assert options["ssl_certfile"] == str(certificates.server_cert)
    assert options["ssl_keyfile"] == str(certificates.server_key)
    assert "sasl_mechanism" not in options


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"HUB_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "HUB_KAFKA_SASL_MECHANISM is required"),
        (
            {
                "HUB_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "HUB_KAFKA_SASL_MECHANISM": "PLAIN",
                "HUB_KAFKA_SASL_USERNAME": "hub",
            },
            "HUB_KAFKA_SASL_PASSWORD is required with SASL_PLAINTEXT",
        ),
        (
            {"HUB_KAFKA_SASL_PASSWORD": PASSWORD},
            "HUB_KAFKA_SASL_PASSWORD is set but HUB_KAFKA_SECURITY_PROTOCOL is PLAINTEXT",
        ),
        (
            {"HUB_KAFKA_SSL_CAFILE": "/etc/ca.pem"},
            "HUB_KAFKA_SSL_CAFILE is set but HUB_KAFKA_SECURITY_PROTOCOL is PLAINTEXT",
        ),
        (
            {"HUB_KAFKA_SECURITY_PROTOCOL": "SSL", "HUB_KAFKA_SSL_CERTFILE": "/etc/c.pem"},
            "HUB_KAFKA_SSL_CERTFILE and HUB_KAFKA_SSL_KEYFILE go together",
        ),
        ({"HUB_KAFKA_SECURITY_PROTOCOL": "TLS"}, "kafka_security_protocol"),
        (
            {"HUB_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "HUB_KAFKA_SASL_MECHANISM": "GSSAPI"},
            "kafka_sasl_mechanism",
        ),
    ],
)
def test_half_a_security_configuration_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HUB_MASTER_KEY", "bWFzdGVyLWtleS12YWx1ZS1ub3QtZm9yLWxvZ3MhIQ==")
    with pytest.raises(ValidationError) as refused:
        Settings()
    text = str(refused.value)
    assert named in text
    assert PASSWORD not in text
    assert "bWFzdGVy" not in text  # no other setting's value either

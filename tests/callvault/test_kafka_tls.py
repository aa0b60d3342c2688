"""Kafka traffic is TLS: the stack's broker refuses plaintext and unverified clients, every
Callvault client verifies the broker, and production refuses to turn TLS off."""

from __future__ import annotations

import asyncio
import socket
import ssl
import stat
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from cryptography import x509

from callvault.devstack.pki import ensure_ca, ensure_leaf
from callvault.errors import DevStackError, SettingsError
from callvault.kafka_client import kafka_options
from callvault.settings import Settings, load_settings

pytestmark = pytest.mark.integration


def _host_port(settings: Settings) -> tuple[str, int]:
    host, port = settings.kafka.bootstrap.split(",")[0].rsplit(":", 1)
    return host, int(port)


async def _metadata(**options: object) -> object:
    admin = AIOKafkaAdminClient(request_timeout_ms=3000, **options)  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(admin.start(), 10)
        return await asyncio.wait_for(admin.describe_cluster(), 10)
    finally:
        await admin.close()


async def test_callvault_clients_reach_the_broker_over_verified_tls(stack_settings: Settings):
    options = kafka_options(stack_settings)
    assert options["security_protocol"] == "SSL"
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert options["ssl_context"].check_hostname
    info = await _metadata(**options)
    assert info["brokers"]  # type: ignore[index]


def test_the_broker_negotiates_modern_tls_with_a_certificate_for_its_address(stack_settings):
    host, port = _host_port(stack_settings)
    ctx = ssl.create_default_context(cafile=str(stack_settings.kafka_ca_file))
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        assert tls.version() in ("TLSv1.3", "TLSv1.2")
        assert tls.getpeercert()["subjectAltName"]


async def test_a_plaintext_client_gets_nothing(stack_settings: Settings):
    with pytest.raises(Exception):  # noqa: B017 (aiokafka raises several kinds here)
        await _metadata(bootstrap_servers=stack_settings.kafka.bootstrap)


async def test_a_client_trusting_another_ca_refuses_the_broker(stack_settings, tmp_path: Path):
    stranger = ensure_ca(tmp_path / "other-ca")
    ctx = ssl.create_default_context(cafile=str(stranger.ca_file))
    with pytest.raises(Exception):  # noqa: B017
        await _metadata(
            bootstrap_servers=stack_settings.kafka.bootstrap, security_protocol="SSL",
            ssl_context=ctx,
        )  # fmt: skip


def test_production_refuses_plaintext_kafka():
    with pytest.raises(SettingsError, match=r"kafka\.tls"):
        load_settings(
            environment="production", kafka={"tls": False},
            clickhouse={"dsn": "http://h:8123", "workspace_secret": "w" * 32},
            hash_pepper="p" * 32, worker={"query_token": "q" * 32},
            ingest={"api_token": "a" * 32, "nonce_secret": "n" * 32},
            s3={"secret_key": "s" * 32},
        )  # fmt: skip


def test_a_missing_ca_file_is_a_clear_error(tmp_path: Path):
    settings = load_settings(home=tmp_path, kafka={"ca_file": str(tmp_path / "nope.pem")})
    with pytest.raises(SettingsError, match=r"nope\.pem"):
        kafka_options(settings)


def test_local_pki_keys_are_private_and_leaves_follow_the_host_list(tmp_path: Path):
    pki = ensure_ca(tmp_path / "tls")
    assert stat.S_IMODE(pki.ca_key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(pki.directory.stat().st_mode) == 0o700
    first = ensure_leaf(pki, "kafka", ["127.0.0.1", "localhost"]).read_bytes()
    assert ensure_leaf(pki, "kafka", ["127.0.0.1", "localhost"]).read_bytes() == first  # reused
    second = ensure_leaf(pki, "kafka", ["127.0.0.1", "kafka"]).read_bytes()
    assert second != first
    cert = x509.load_pem_x509_certificate(second)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["kafka"]
    assert stat.S_IMODE(pki.keystore("kafka").stat().st_mode) == 0o600


def test_the_stack_never_overwrites_a_ca_it_does_not_own(tmp_path: Path):
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "ca.pem").write_text("an operator's CA")
    with pytest.raises(DevStackError, match=r"without ca-key\.pem"):
        ensure_ca(tmp_path / "tls")
    assert (tmp_path / "tls" / "ca.pem").read_text() == "an operator's CA"

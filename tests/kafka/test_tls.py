"""TLS options for the brokers: CA file, client certificate (mutual TLS), hostname check."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from worker.kafka.admin import client_kwargs
from worker.settings import SettingsError, load_settings


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=streamrec-test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_ca_client_certificate_and_hostname_check_reach_the_ssl_context(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    settings = load_settings(
        kafka_bootstrap_servers="kafka:9093",
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=cert,
        kafka_ssl_certfile=cert,
        kafka_ssl_keyfile=key,
    )
    context = client_kwargs(settings)["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "streamrec-test"),),)
    ]


def test_a_missing_tls_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="KAFKA_SSL_CAFILE"):
        load_settings(kafka_ssl_cafile=tmp_path / "nope.pem")
    _, key = _self_signed(tmp_path)
    with pytest.raises(SettingsError, match="KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE"):
        load_settings(kafka_ssl_keyfile=key)

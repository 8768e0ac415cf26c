"""A planted secret never reaches the log output, at any level, from any library."""

from __future__ import annotations

import io
import logging

import pytest
from pydantic import SecretStr

from worker.logs import RedactSecrets, configure_logging
from worker.settings import SettingsError, load_settings

PLANTED = "pl4nted-s3cret-Xq9"


def test_a_planted_secret_is_masked_in_every_record_and_the_kafka_client_stays_at_info() -> None:
    settings = load_settings(
        kafka_bootstrap_servers="127.0.0.1:9",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="worker",
        kafka_sasl_password=SecretStr(PLANTED),
        log_level="DEBUG",
    )
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("aiokafka").level)
    stream = io.StringIO()
    root.handlers = [logging.StreamHandler(stream)]
    try:
        configure_logging(settings)
        logging.getLogger("aiokafka.conn").info("auth bytes b'\\x00worker\\x00%s'", PLANTED)
        logging.getLogger("aiokafka.conn").debug("DEBUG frame %s", PLANTED)
        logging.getLogger("worker.x").debug("config %s", {"password": PLANTED})
        try:
            raise RuntimeError(f"connect failed with {PLANTED}")
        except RuntimeError:
            logging.getLogger("worker.y").exception("failed")
        for handler in root.handlers:
            handler.flush()
    finally:
        root.handlers, root.level = saved[0], saved[1]
        logging.getLogger("aiokafka").setLevel(saved[2])
    output = stream.getvalue()
    assert PLANTED not in output
    assert output.count("***") >= 3
    assert "DEBUG frame" not in output  # aiokafka's DEBUG is capped
    assert "config" in output  # the worker's own DEBUG still shows


def test_redaction_without_secrets_leaves_records_alone() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "a %s", ("b",), None)
    assert RedactSecrets([]).filter(record) and record.getMessage() == "a b"


def test_a_qdrant_api_key_over_plain_http_is_refused_unless_allowed() -> None:
    with pytest.raises(SettingsError, match="clear text"):
        load_settings(qdrant_url="http://qdrant:6333", qdrant_api_key=SecretStr("k"))
    assert load_settings(qdrant_url="https://qdrant:6333", qdrant_api_key=SecretStr("k"))
    assert load_settings(
        qdrant_url="http://qdrant:6333",
        qdrant_api_key=SecretStr("k"),
        qdrant_allow_insecure_api_key=True,
    )

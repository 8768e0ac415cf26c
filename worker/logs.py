"""Process logging: one format, the Kafka client capped at INFO, secrets never printed.

aiokafka logs connection details at DEBUG (SASL/PLAIN frames among them); its level is
capped at INFO whatever LOG_LEVEL says, and every record that reaches a handler has each
configured secret replaced by `***`, whichever library logged it.
"""

from __future__ import annotations

import logging

from worker.settings import Settings

_CHATTY_CLIENTS = ("aiokafka", "kafka")
_MASK = "***"


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        # Longest first: a secret containing another is masked whole.
        self._secrets = sorted((s for s in secrets if s), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        if any(secret in message for secret in self._secrets):
            for secret in self._secrets:
                message = message.replace(secret, _MASK)
            record.msg, record.args = message, None
        if record.exc_info and not record.exc_text:
            # Formatted here (the handler would reuse it) so the traceback is masked too.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            for secret in self._secrets:
                record.exc_text = record.exc_text.replace(secret, _MASK)
        return True


def secrets_of(settings: Settings) -> list[str]:
    return [
        secret.get_secret_value()
        for secret in (
            settings.kafka_sasl_password,
            settings.kafka_ssl_key_password,
            settings.qdrant_api_key,
        )
        if secret is not None
    ]


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(settings.log_level)
    redact = RedactSecrets(secrets_of(settings))
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
    for name in _CHATTY_CLIENTS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logging.INFO, logging.getLogger().getEffectiveLevel()))

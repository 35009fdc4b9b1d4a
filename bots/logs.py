"""Logging: one line per event; JSON when not on a terminal (journald keeps the fields
searchable), with every configured secret masked wherever it would appear."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

from pydantic import SecretStr

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged too.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        event.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info or record.exc_text:
            event["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(event, ensure_ascii=False, default=str)


class MaskSecrets(logging.Filter):
    """Replaces secrets in the formatted message (URLs with tokens, repr of clients, ...)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg, record.args = self._mask(record.getMessage()), None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self._mask(record.exc_text)
        return True

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def secrets_of(settings: object) -> list[str]:
    """The values of every SecretStr setting, plus a password inside the Redis URL."""
    from urllib.parse import urlsplit

    values = []
    for name in type(settings).model_fields:  # type: ignore[attr-defined]
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            values.append(secret)
            password = urlsplit(secret).password if "://" in secret else None
            if password:
                values.append(password)
    return values


def setup_logging(settings: Any, json_lines: bool | None = None) -> None:
    """Log at the configured level to stderr: text on a terminal, JSON lines otherwise."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(MaskSecrets(secrets_of(settings)))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # HTTP client libraries log request URLs (Telegram's carry the token) and bodies.
    for noisy in ("httpx", "httpcore", "aiohttp.access", "slack_sdk", "slack_bolt"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))

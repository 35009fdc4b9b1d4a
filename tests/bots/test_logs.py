"""Log lines: JSON for journald, one per event, secrets masked wherever they appear."""

from __future__ import annotations

import io
import json
import logging

import pytest

from bots.logs import JsonFormatter, MaskSecrets, secrets_of, setup_logging
from bots.settings import load_settings

TOKEN = "123456:AAE-secret-token"


def capture(*filters: logging.Filter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    for f in filters:
        handler.addFilter(f)
    logger = logging.getLogger(f"parley.test.{id(out)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, out


def test_one_json_object_per_line_with_extra_fields() -> None:
    logger, out = capture()
    logger.info("answered %s", "tg:-100", extra={"chat": "telegram:-100", "message_id": "7"})
    (line,) = out.getvalue().splitlines()
    event = json.loads(line)
    assert event["message"] == "answered tg:-100" and event["level"] == "INFO"
    assert event["chat"] == "telegram:-100" and event["message_id"] == "7"


def test_secrets_are_masked_in_messages_arguments_and_tracebacks() -> None:
    logger, out = capture(MaskSecrets([TOKEN]))
    logger.info("GET https://api.telegram.org/bot%s/getMe", TOKEN)
    try:
        raise RuntimeError(f"bad url https://api.telegram.org/bot{TOKEN}/x")
    except RuntimeError:
        logger.exception("request failed")
    text = out.getvalue()
    assert TOKEN not in text
    assert text.count("***") >= 2 and "Traceback" in text


def test_the_secrets_are_every_secret_setting_and_the_redis_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PARLEY_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("PARLEY_REDIS_URL", "redis://:pw-in-url-123@host:6379/0")
    found = secrets_of(load_settings())
    assert TOKEN in found and "pw-in-url-123" in found


def test_setup_logging_writes_json_when_not_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PARLEY_TELEGRAM_TOKEN", TOKEN)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging(load_settings())
        logging.getLogger("parley.test").warning("token is %s", TOKEN)
        logging.getLogger("httpx").info("HTTP Request: POST .../bot%s/getUpdates", TOKEN)
    finally:
        root.handlers, _ = saved
        root.setLevel(saved[1])
    lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["token is ***"]


@pytest.mark.parametrize("logging_first", [True, False])
def test_slack_libraries_log_nothing_below_warning_whichever_comes_first(
    capsys: pytest.CaptureFixture[str], logging_first: bool
) -> None:
    from adapters.slack import HttpMode, SlackAdapter
    from core.queue.memory_store import MemoryStore

    settings = load_settings(log_level="INFO")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        root.setLevel(logging.DEBUG)  # slack_bolt copies the root's level when built
        if logging_first:
            setup_logging(settings, json_lines=True)
        adapter = SlackAdapter(MemoryStore(), bot_token="xoxb-1", ingress=HttpMode("s3cr3t-1"))
        if not logging_first:
            setup_logging(settings, json_lines=True)
        adapter.app.logger.info("request body: text=my+words&response_url=https://hooks.x/1")
        logging.getLogger("slack_sdk.webhook.async_client").info("POST https://hooks.x/2")
        logging.getLogger("parley.slack").info("parley's own line")
        library = [
            logging.getLogger(name)
            for name in list(logging.root.manager.loggerDict)
            if name.startswith(("slack_bolt", "slack_sdk"))
        ]
        assert library and not any(logger.isEnabledFor(logging.INFO) for logger in library)
    finally:
        root.handlers, _ = saved
        root.setLevel(saved[1])
    lines = [json.loads(line)["message"] for line in capsys.readouterr().err.splitlines()]
    assert lines == ["parley's own line"]

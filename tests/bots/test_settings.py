from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from adapters.slack import HttpMode, SocketMode
from adapters.telegram import Webhook
from bots.settings import BUNDLED_MODEL, REPO_ROOT, Settings, load_settings
from core.errors import ConfigError
from core.queue.memory_store import MemoryStore

EXAMPLE = REPO_ROOT / ".env.example"


def test_env_example_lists_every_setting_and_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    names = set(re.findall(r"^(PARLEY_\w+)=", EXAMPLE.read_text(), re.M))
    assert names == {f"PARLEY_{f.upper()}" for f in Settings.model_fields}
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(EXAMPLE.read_text())
    settings = load_settings()
    assert settings.model == BUNDLED_MODEL and settings.decode_overrides() == {}


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_DECODING", "sample")
    monkeypatch.setenv("PARLEY_TOP_P", "0.5")
    monkeypatch.setenv("PARLEY_MIN_REPLY_TOKENS", "4")
    assert load_settings().decode_overrides() == {
        "method": "sample",
        "top_p": 0.5,
        "min_length": 4,
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [("PARLEY_BEAM_WIDTH", "0"), ("PARLEY_TOP_P", "1.5"), ("PARLEY_LOG_LEVEL", "LOUD")],
)
def test_malformed_setting_is_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_systemd_credentials_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "parley_telegram_token").write_text("123:from-a-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    settings = load_settings()
    assert settings.telegram_token is not None
    assert settings.telegram_token.get_secret_value() == "123:from-a-credential"
    assert "from-a-credential" not in "\n".join(settings.describe())


# Every role's view names all it lacks in one error, with the reason for each.
NOTHING_SET = {
    "worker": ["PARLEY_REDIS_URL"],
    "web": ["PARLEY_REDIS_URL"],
    "telegram": ["PARLEY_REDIS_URL", "PARLEY_TELEGRAM_TOKEN"],
    "slack": ["PARLEY_REDIS_URL", "PARLEY_SLACK_BOT_TOKEN", "PARLEY_SLACK_SIGNING_SECRET"],
}


def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    for name in Settings.model_fields:
        monkeypatch.delenv(f"PARLEY_{name.upper()}", raising=False)


def _named(err: pytest.ExceptionInfo[ConfigError], names: list[str]) -> None:
    for name in names:
        assert f"{name} is not set: " in str(err.value)
    assert str(err.value).count("is not set") == len(names)


@pytest.mark.parametrize("role", sorted(NOTHING_SET))
def test_each_role_names_every_missing_setting_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, role: str
) -> None:
    _no_env(monkeypatch, tmp_path)
    with pytest.raises(ConfigError) as err:
        getattr(load_settings(), role)()
    _named(err, NOTHING_SET[role])


@pytest.mark.parametrize(
    ("role", "env", "named"),
    [
        ("worker", {}, ["PARLEY_REDIS_URL"]),
        ("telegram", {"PARLEY_REDIS_URL": "redis://x"}, ["PARLEY_TELEGRAM_TOKEN"]),
        (
            "telegram",
            {"PARLEY_TELEGRAM_MODE": "webhook"},
            [
                "PARLEY_REDIS_URL",
                "PARLEY_TELEGRAM_TOKEN",
                "PARLEY_TELEGRAM_WEBHOOK_URL",
                "PARLEY_TELEGRAM_WEBHOOK_SECRET",
            ],
        ),
        (
            "telegram",
            {
                "PARLEY_REDIS_URL": "redis://x",
                "PARLEY_TELEGRAM_TOKEN": "1:a",
                "PARLEY_TELEGRAM_MODE": "webhook",
            },
            ["PARLEY_TELEGRAM_WEBHOOK_URL", "PARLEY_TELEGRAM_WEBHOOK_SECRET"],
        ),
        (
            "slack",
            {"PARLEY_SLACK_MODE": "socket"},
            ["PARLEY_REDIS_URL", "PARLEY_SLACK_BOT_TOKEN", "PARLEY_SLACK_APP_TOKEN"],
        ),
        (
            "slack",
            {
                "PARLEY_REDIS_URL": "redis://x",
                "PARLEY_SLACK_BOT_TOKEN": "xoxb-1",
                "PARLEY_SLACK_MODE": "socket",
            },
            ["PARLEY_SLACK_APP_TOKEN"],
        ),
    ],
)
def test_each_missing_required_setting_is_named(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    role: str,
    env: dict[str, str],
    named: list[str],
) -> None:
    _no_env(monkeypatch, tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as err:
        getattr(load_settings(), role)()
    _named(err, named)


def test_an_in_process_queue_needs_no_redis(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_env(monkeypatch, tmp_path)
    settings = load_settings(
        telegram_token="1:a", slack_bot_token="xoxb-1", slack_signing_secret="s"
    )
    # `parley serve` answers in its own process: the embedded store
    web = settings.web(shared_queue=False)
    assert web.queue.redis_url is None and isinstance(web.queue.store(), MemoryStore)
    assert settings.queue().redis_url is None
    assert settings.telegram(shared_queue=False).token == "1:a"
    assert settings.slack(shared_queue=False).ingress == HttpMode("s")
    with pytest.raises(ConfigError, match="PARLEY_REDIS_URL is not set"):
        settings.queue(shared=True)


def test_role_views_are_typed_frozen_and_keep_secrets_out_of_repr(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_env(monkeypatch, tmp_path)
    settings = load_settings(
        redis_url="redis://:pw-secret@localhost:6379/0",
        redis_partitions=4,
        worker_batch=16,
        worker_max_wait_ms=20,
        telegram_token="1:tok-secret",
        telegram_mode="webhook",
        telegram_webhook_url="https://bot.example.com/telegram",
        telegram_webhook_secret="hook-secret",
        telegram_allowed_chats=[-100, 7],
        slack_bot_token="xoxb-secret",
        slack_mode="socket",
        slack_app_token="xapp-secret",
        web_token="web-secret",
    )
    telegram = settings.telegram()
    assert telegram.webhook == Webhook("https://bot.example.com/telegram", "hook-secret")
    assert telegram.allowed_chats == (-100, 7) and telegram.port == 8081
    queue = telegram.queue
    assert (queue.partitions, queue.batch, queue.max_wait) == (4, 16, 0.02)
    assert queue.limits.backlog == settings.backlog_limit
    slack = settings.slack()
    assert slack.ingress == SocketMode("xapp-secret") and slack.bot_token == "xoxb-secret"
    assert settings.web().token == "web-secret" and settings.worker().port == 0
    shown = " ".join(repr(v) for v in (telegram, slack, settings.web(), settings.worker()))
    assert "secret" not in shown
    with pytest.raises(dataclasses.FrozenInstanceError):
        telegram.token = "2:other"  # type: ignore[misc]


def test_describe_masks_secrets_but_shows_where_redis_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_REDIS_URL", "rediss://:s3cret-pw@redis.example:6380/0")
    monkeypatch.setenv("PARLEY_SLACK_BOT_TOKEN", "xoxb-secret-token")
    lines = load_settings().describe()
    text = "\n".join(lines)
    assert "s3cret-pw" not in text and "xoxb-secret-token" not in text
    assert "PARLEY_REDIS_URL=rediss://:********@redis.example:6380/0" in lines
    assert "PARLEY_SLACK_BOT_TOKEN=********" in lines

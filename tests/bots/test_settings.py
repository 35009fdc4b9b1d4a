from __future__ import annotations

import re
from pathlib import Path

import pytest

from bots.settings import BUNDLED_MODEL, REPO_ROOT, Settings, load_settings
from core.errors import ConfigError

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


@pytest.mark.parametrize(
    ("role", "env", "named"),
    [
        ("worker", {}, ["PARLEY_REDIS_URL"]),
        ("telegram", {"PARLEY_REDIS_URL": "redis://x"}, ["PARLEY_TELEGRAM_TOKEN"]),
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
            {},
            ["PARLEY_REDIS_URL", "PARLEY_SLACK_BOT_TOKEN", "PARLEY_SLACK_SIGNING_SECRET"],
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
    monkeypatch: pytest.MonkeyPatch, role: str, env: dict[str, str], named: list[str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as err:
        load_settings().require(role)
    for name in named:
        assert f"{name} is not set" in str(err.value)
    assert str(err.value).count("is not set") == len(named)


def test_describe_masks_secrets_but_shows_where_redis_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_REDIS_URL", "rediss://:s3cret-pw@redis.example:6380/0")
    monkeypatch.setenv("PARLEY_SLACK_BOT_TOKEN", "xoxb-secret-token")
    lines = load_settings().describe()
    text = "\n".join(lines)
    assert "s3cret-pw" not in text and "xoxb-secret-token" not in text
    assert "PARLEY_REDIS_URL=rediss://:********@redis.example:6380/0" in lines
    assert "PARLEY_SLACK_BOT_TOKEN=********" in lines

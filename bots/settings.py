"""Settings, read once from the environment and `.env` (prefix PARLEY_)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError
from core.model.config import DecodeMethod
from core.queue.keys import Keys
from core.queue.memory_store import MemoryStore
from core.queue.redis_store import RedisStore
from core.queue.types import Limits, Store

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODEL = REPO_ROOT / "models" / "default"
# What a process says, and exits with, when Redis refuses its credentials.
STORE_REFUSED = "PARLEY_REDIS_URL: Redis refused the password"


class Settings(BaseSettings):
    """Every setting parley reads. `.env.example` lists them with their defaults."""

    model_config = SettingsConfigDict(
        env_prefix="PARLEY_", env_file=".env", env_ignore_empty=True, extra="ignore"
    )

    model: Path = Field(BUNDLED_MODEL, description="model directory to answer with")
    decoding: DecodeMethod | None = Field(
        None, description="decoding method; empty = the model's default"
    )
    beam_width: int | None = Field(None, ge=1, le=16)
    temperature: float | None = Field(None, gt=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_reply_tokens: int | None = Field(None, ge=1, le=256)
    min_reply_tokens: int | None = Field(None, ge=1, le=256)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # the queue
    redis_url: SecretStr | None = Field(
        None, description="redis://, rediss:// or unix:// URL; empty = the embedded store"
    )
    redis_partitions: int = Field(8, ge=1, le=1024)
    memory_max_chats: int = Field(
        10_000, ge=1, description="chats (rooms) the in-memory queue remembers at most"
    )
    worker_batch: int = Field(32, ge=1, le=256)
    worker_max_wait_ms: float = Field(5.0, ge=0, le=1000)
    backlog_limit: int = Field(50, ge=1)
    sender_rate: int = Field(20, ge=0)
    sender_rate_window_seconds: float = Field(60.0, gt=0)
    lease_seconds: float = Field(30.0, gt=0)
    max_attempts: int = Field(3, ge=1)
    context_turns: int = Field(6, ge=0)
    context_bytes: int = Field(4096, ge=0)
    context_ttl_seconds: float = Field(86_400.0, gt=0)

    # every adapter
    bot_name: str = Field("parley", min_length=1, description="the name people mention")
    max_message_chars: int = Field(
        1000, ge=1, description="longer questions are cut to this, with a note in the reply"
    )
    http_host: str = Field(
        "127.0.0.1", description="address the HTTP servers (webhooks, /healthz, /metrics) bind"
    )
    worker_port: int = Field(0, ge=0, le=65535, description="worker /healthz, /metrics; 0 = off")
    instance: str = Field(
        "",
        pattern=r"^[\w.-]*$",
        description="tells apart processes of one platform on one host (their send leases)",
    )

    # Telegram
    telegram_token: SecretStr | None = Field(None, description="from @BotFather")
    telegram_mode: Literal["polling", "webhook"] = "polling"
    telegram_webhook_url: str | None = Field(
        None, description="public HTTPS URL Telegram posts updates to (webhook mode)"
    )
    telegram_webhook_secret: SecretStr | None = Field(
        None, description="checked against X-Telegram-Bot-Api-Secret-Token (webhook mode)"
    )
    telegram_port: int = Field(8081, ge=1, le=65535, description="webhook, /healthz, /metrics")
    telegram_api_url: str = Field(
        "https://api.telegram.org", description="Bot API server (a local one, or a test fake)"
    )
    telegram_allowed_chats: list[int] = Field(
        default_factory=list, description="chat ids to serve, JSON list; empty = every chat"
    )
    telegram_group_rate: int = Field(20, ge=1, description="messages per minute per group")
    telegram_global_rate: float = Field(30.0, gt=0, description="messages per second overall")

    # Slack
    slack_bot_token: SecretStr | None = Field(None, description="xoxb-... bot token")
    slack_signing_secret: SecretStr | None = Field(None, description="verifies HTTP requests")
    slack_app_token: SecretStr | None = Field(None, description="xapp-... for Socket Mode")
    slack_mode: Literal["http", "socket"] = "http"
    slack_command: str = Field("/ask", pattern=r"^/[\w-]+$")
    slack_reset_verb: str = Field("reset", min_length=1)
    slack_port: int = Field(3000, ge=1, le=65535, description="events, commands, /healthz")
    slack_api_url: str = Field("https://slack.com/api/", description="Web API base URL")

    # the web group chat
    web_port: int = Field(8080, ge=1, le=65535)
    web_token: SecretStr | None = Field(
        None, description="required as ?token= or X-Parley-Token when set; empty = open"
    )
    web_history: int = Field(100, ge=0, description="messages a room keeps for newcomers")
    web_max_rooms: int = Field(100, ge=1)
    web_max_connections: int = Field(500, ge=1)
    web_rate: int = Field(10, ge=1, description="messages per connection per 10 seconds")

    def require(self, role: str) -> None:
        """Raise `ConfigError` naming every setting `role` needs that is missing."""
        needs: dict[str, str] = {}
        if role in ("worker", "web", "telegram", "slack"):
            # separate processes share their queue only through Redis
            needs["redis_url"] = "worker and adapter processes share their queue through Redis"
        if role == "telegram":
            needs["telegram_token"] = "the bot token from @BotFather"
            if self.telegram_mode == "webhook":
                needs["telegram_webhook_url"] = "webhook mode needs the public HTTPS URL"
                needs["telegram_webhook_secret"] = "webhook mode checks Telegram's secret token"
        if role == "slack":
            needs["slack_bot_token"] = "the xoxb- bot token"
            if self.slack_mode == "http":
                needs["slack_signing_secret"] = "HTTP mode verifies Slack's signatures"
            else:
                needs["slack_app_token"] = "Socket Mode needs the xapp- app-level token"
        missing = [
            f"PARLEY_{name.upper()} is not set: {why}"
            for name, why in needs.items()
            if getattr(self, name) is None
        ]
        if missing:
            raise ConfigError("; ".join(missing))

    def describe(self) -> list[str]:
        """Every setting as NAME=value, secrets masked."""
        lines = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                shown = _mask(value.get_secret_value())
            elif value is None:
                shown = ""
            elif isinstance(value, list):
                shown = json.dumps(value)
            else:
                shown = str(value)
            lines.append(f"PARLEY_{name.upper()}={shown}")
        return lines

    def limits(self) -> Limits:
        return Limits(
            backlog=self.backlog_limit,
            sender_rate=self.sender_rate,
            rate_window=self.sender_rate_window_seconds,
            lease=self.lease_seconds,
            max_attempts=self.max_attempts,
            context_turns=self.context_turns,
            context_bytes=self.context_bytes,
            context_ttl=self.context_ttl_seconds,
        )

    def store(self) -> Store:
        """The Redis store when a URL is set, else the embedded one."""
        if self.redis_url is None:
            return MemoryStore(self.limits(), max_chats=self.memory_max_chats)
        return RedisStore.from_url(
            self.redis_url.get_secret_value(), self.limits(), Keys(partitions=self.redis_partitions)
        )

    def decode_overrides(self) -> dict[str, object]:
        """Decoding options the settings change, as `DecodeOptions` field names."""
        pairs = {
            "method": self.decoding,
            "beam_width": self.beam_width,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_length": self.max_reply_tokens,
            "min_length": self.min_reply_tokens,
        }
        return {k: v for k, v in pairs.items() if v is not None}


def _mask(secret: str) -> str:
    """A URL keeps its scheme and host with the password hidden; anything else is hidden."""
    parts = urlsplit(secret) if "://" in secret else None
    if parts is None or (not parts.hostname and parts.scheme != "unix"):
        return "********" if secret else ""
    if parts.password:
        host = parts.netloc.rpartition("@")[2]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:********@{host}"))
    return secret


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, `.env`, and files in systemd's credentials directory
    (`LoadCredential=`: credential `parley_telegram_token` sets PARLEY_TELEGRAM_TOKEN);
    a bad value raises `ConfigError` naming the setting."""
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        overrides.setdefault("_secrets_dir", credentials)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"PARLEY_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(problems) from None

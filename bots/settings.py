"""Settings, read once from the environment and `.env` (prefix PARLEY_), and each role's
frozen view of them (`Settings.worker()`, `.web()`, `.telegram()`, `.slack()`, `.queue()`),
checked once where it is built: a view holds only what its role may use, already valid."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError
from core.model.config import DecodeMethod
from core.queue.keys import Keys
from core.queue.memory_store import MemoryStore
from core.queue.redis_store import RedisStore
from core.queue.types import Limits, Store

if TYPE_CHECKING:
    from adapters.slack import HttpMode, SocketMode
    from adapters.telegram import Webhook

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODEL = REPO_ROOT / "models" / "default"
# What a process says, and exits with, when Redis refuses its credentials.
STORE_REFUSED = "PARLEY_REDIS_URL: Redis refused the password"


@dataclass(frozen=True)
class QueueSettings:
    """The queue: Redis at `redis_url`, or the embedded store when it is None."""

    redis_url: str | None = field(repr=False)
    partitions: int
    memory_max_chats: int
    limits: Limits
    batch: int  # chats a worker answers in one model batch at most
    max_wait: float  # seconds a worker waits to fill a batch

    def store(self) -> Store:
        """The Redis store when a URL is set, else the embedded one."""
        if self.redis_url is None:
            return MemoryStore(self.limits, max_chats=self.memory_max_chats)
        return RedisStore.from_url(self.redis_url, self.limits, Keys(partitions=self.partitions))


@dataclass(frozen=True)
class WorkerSettings:
    queue: QueueSettings
    model: Path
    http_host: str
    port: int  # /healthz and /metrics; 0 = off


@dataclass(frozen=True)
class WebSettings:
    queue: QueueSettings
    model: Path  # what `parley serve` answers with
    http_host: str
    port: int
    instance: str
    bot_name: str
    max_chars: int
    history: int
    max_rooms: int
    max_connections: int
    rate: int
    token: str | None = field(repr=False)  # None: the rooms are open


@dataclass(frozen=True)
class TelegramSettings:
    queue: QueueSettings
    http_host: str
    port: int
    instance: str
    token: str = field(repr=False)
    webhook: Webhook | None = field(repr=False)  # None: long polling
    api_url: str
    allowed_chats: tuple[int, ...]  # empty: every chat
    group_rate: int
    global_rate: float
    max_chars: int


@dataclass(frozen=True)
class SlackSettings:
    queue: QueueSettings
    http_host: str
    port: int
    instance: str
    bot_token: str = field(repr=False)
    ingress: HttpMode | SocketMode = field(repr=False)
    command: str
    reset_verb: str
    api_url: str
    max_chars: int


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

    def queue(self, *, shared: bool = False) -> QueueSettings:
        """The queue's settings; `shared`: other processes use it too, so it must be Redis."""
        _raise(self._queue_problems(shared))
        return self._queue()

    def worker(self) -> WorkerSettings:
        """What `parley worker` runs with; raises `ConfigError` naming every missing setting."""
        _raise(self._queue_problems(True))
        return WorkerSettings(
            queue=self._queue(),
            model=self.model,
            http_host=self.http_host,
            port=self.worker_port,
        )

    def web(self, *, shared_queue: bool = True) -> WebSettings:
        """What the web chat runs with (`parley serve` passes `shared_queue=False`: its own
        worker answers, so the embedded store will do)."""
        _raise(self._queue_problems(shared_queue))
        return WebSettings(
            queue=self._queue(),
            model=self.model,
            http_host=self.http_host,
            port=self.web_port,
            instance=self.instance,
            bot_name=self.bot_name,
            max_chars=self.max_message_chars,
            history=self.web_history,
            max_rooms=self.web_max_rooms,
            max_connections=self.web_max_connections,
            rate=self.web_rate,
            token=_plain(self.web_token),
        )

    def telegram(self, *, shared_queue: bool = True) -> TelegramSettings:
        """What `parley telegram` runs with; raises `ConfigError` naming every missing
        setting. `shared_queue=False` when the caller brings an in-process store."""
        from adapters.telegram import Webhook

        problems = self._queue_problems(shared_queue)
        needs = {"telegram_token": "the bot token from @BotFather"}
        if self.telegram_mode == "webhook":
            needs["telegram_webhook_url"] = "webhook mode needs the public HTTPS URL"
            needs["telegram_webhook_secret"] = "webhook mode checks Telegram's secret token"
        _raise(problems + self._missing(needs))
        assert self.telegram_token is not None  # checked above
        webhook = None
        if self.telegram_mode == "webhook":
            assert self.telegram_webhook_url and self.telegram_webhook_secret  # checked above
            webhook = Webhook(
                self.telegram_webhook_url, self.telegram_webhook_secret.get_secret_value()
            )
        return TelegramSettings(
            queue=self._queue(),
            http_host=self.http_host,
            port=self.telegram_port,
            instance=self.instance,
            token=self.telegram_token.get_secret_value(),
            webhook=webhook,
            api_url=self.telegram_api_url,
            allowed_chats=tuple(self.telegram_allowed_chats),
            group_rate=self.telegram_group_rate,
            global_rate=self.telegram_global_rate,
            max_chars=self.max_message_chars,
        )

    def slack(self, *, shared_queue: bool = True) -> SlackSettings:
        """What `parley slack` runs with; raises `ConfigError` naming every missing setting.
        `shared_queue=False` when the caller brings an in-process store."""
        from adapters.slack import HttpMode, SocketMode

        problems = self._queue_problems(shared_queue)
        needs = {"slack_bot_token": "the xoxb- bot token"}
        if self.slack_mode == "http":
            needs["slack_signing_secret"] = "HTTP mode verifies Slack's signatures"
        else:
            needs["slack_app_token"] = "Socket Mode needs the xapp- app-level token"
        _raise(problems + self._missing(needs))
        assert self.slack_bot_token is not None  # checked above
        ingress: HttpMode | SocketMode
        if self.slack_mode == "http":
            assert self.slack_signing_secret is not None  # checked above
            ingress = HttpMode(self.slack_signing_secret.get_secret_value())
        else:
            assert self.slack_app_token is not None  # checked above
            ingress = SocketMode(self.slack_app_token.get_secret_value())
        return SlackSettings(
            queue=self._queue(),
            http_host=self.http_host,
            port=self.slack_port,
            instance=self.instance,
            bot_token=self.slack_bot_token.get_secret_value(),
            ingress=ingress,
            command=self.slack_command,
            reset_verb=self.slack_reset_verb,
            api_url=self.slack_api_url,
            max_chars=self.max_message_chars,
        )

    def _queue_problems(self, shared: bool) -> list[str]:
        if not shared:
            return []
        # separate processes share their queue only through Redis
        return self._missing(
            {"redis_url": "worker and adapter processes share their queue through Redis"}
        )

    def _missing(self, needs: dict[str, str]) -> list[str]:
        return [
            f"PARLEY_{name.upper()} is not set: {why}"
            for name, why in needs.items()
            if getattr(self, name) is None
        ]

    def _queue(self) -> QueueSettings:
        return QueueSettings(
            redis_url=_plain(self.redis_url),
            partitions=self.redis_partitions,
            memory_max_chats=self.memory_max_chats,
            limits=Limits(
                backlog=self.backlog_limit,
                sender_rate=self.sender_rate,
                rate_window=self.sender_rate_window_seconds,
                lease=self.lease_seconds,
                max_attempts=self.max_attempts,
                context_turns=self.context_turns,
                context_bytes=self.context_bytes,
                context_ttl=self.context_ttl_seconds,
            ),
            batch=self.worker_batch,
            max_wait=self.worker_max_wait_ms / 1000,
        )

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


def _plain(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def _raise(problems: list[str]) -> None:
    if problems:
        raise ConfigError("; ".join(problems))


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

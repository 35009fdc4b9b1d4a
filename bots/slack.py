"""`parley slack`: the Slack adapter as a process (HTTP events or Socket Mode)."""

from __future__ import annotations

from pydantic import SecretStr

from adapters.slack import SlackAdapter, SlackAuthError
from bots.service import run_adapter
from bots.settings import Settings
from core.errors import ConfigError
from core.queue.types import SendLimits, Store


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def build_slack(
    settings: Settings, store: Store | None = None, *, limits: SendLimits | None = None
) -> SlackAdapter:
    """The adapter; serve its `web_app()`. Without `store`, the settings' Redis: the workers
    answer in other processes. `limits` replaces Slack's per-channel send rate (tests)."""
    if store is None:
        settings.require("slack")  # names every missing setting at once
        store = settings.store()
    if settings.slack_bot_token is None:
        raise ConfigError("PARLEY_SLACK_BOT_TOKEN is not set: the xoxb- bot token")
    if settings.slack_mode == "http" and settings.slack_signing_secret is None:
        raise ConfigError("PARLEY_SLACK_SIGNING_SECRET is not set: HTTP mode verifies requests")
    if settings.slack_mode == "socket" and settings.slack_app_token is None:
        raise ConfigError("PARLEY_SLACK_APP_TOKEN is not set: Socket Mode needs the xapp- token")
    return SlackAdapter(
        store,
        bot_token=_secret(settings.slack_bot_token),
        signing_secret=_secret(settings.slack_signing_secret),
        app_token=_secret(settings.slack_app_token),
        mode=settings.slack_mode,
        command=settings.slack_command,
        reset_verb=settings.slack_reset_verb,
        api_url=settings.slack_api_url,
        limits=limits,
        max_chars=settings.max_message_chars,
    )


async def serve_slack(settings: Settings) -> None:
    """Run the Slack adapter, its routes, /healthz and /metrics until SIGTERM or SIGINT."""
    adapter = build_slack(settings)
    try:
        await run_adapter(
            adapter,
            settings.http_host,
            settings.slack_port,
            adapter.web_app(),
            instance=settings.instance,
        )
    except SlackAuthError as exc:
        raise ConfigError(f"PARLEY_SLACK_{exc.which.upper()}_TOKEN: {exc}") from None

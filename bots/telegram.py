"""`parley telegram`: the Telegram adapter as a process, wired from the settings."""

from __future__ import annotations

from aiohttp import web

from adapters.telegram import TelegramAdapter
from bots.service import run_adapter
from bots.settings import Settings
from core.errors import ConfigError
from core.queue.types import Store


def build_telegram(
    settings: Settings, store: Store | None = None, *, rate_window: float = 60.0
) -> tuple[TelegramAdapter, web.Application]:
    """The adapter and its HTTP app (the webhook route, in webhook mode).

    Without `store`, the settings' Redis: the workers answer in other processes.
    `rate_window` goes with `telegram_group_rate` (Telegram's is a minute; tests shrink it).
    """
    if store is None:
        settings.require("telegram")  # names every missing setting at once
        store = settings.store()
    if settings.telegram_token is None:
        raise ConfigError("PARLEY_TELEGRAM_TOKEN is not set: the bot token from @BotFather")
    secret = settings.telegram_webhook_secret
    adapter = TelegramAdapter(
        store,
        settings.telegram_token.get_secret_value(),
        mode=settings.telegram_mode,
        webhook_url=settings.telegram_webhook_url,
        webhook_secret=secret.get_secret_value() if secret else None,
        api_url=settings.telegram_api_url,
        allowed_chats=settings.telegram_allowed_chats,
        group_rate=settings.telegram_group_rate,
        rate_window=rate_window,
        global_rate=settings.telegram_global_rate,
        max_chars=settings.max_message_chars,
    )
    app = web.Application()
    adapter.add_routes(app)
    return adapter, app


async def serve_telegram(settings: Settings) -> None:
    """Run the Telegram adapter until SIGTERM or SIGINT."""
    adapter, app = build_telegram(settings)
    await run_adapter(
        adapter, settings.http_host, settings.telegram_port, app, instance=settings.instance
    )

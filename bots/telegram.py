"""`parley telegram`: the Telegram adapter as a process, wired from its settings."""

from __future__ import annotations

from aiohttp import web

from adapters.telegram import TelegramAdapter
from bots.service import run_adapter
from bots.settings import TelegramSettings
from core.queue.types import Store


def build_telegram(
    settings: TelegramSettings, store: Store | None = None, *, rate_window: float = 60.0
) -> tuple[TelegramAdapter, web.Application]:
    """The adapter and its HTTP app (the webhook route, in webhook mode).

    Without `store`, the settings' queue (Redis: the workers answer in other processes).
    `rate_window` goes with the group rate (Telegram's is a minute; tests shrink it).
    """
    adapter = TelegramAdapter(
        settings.queue.store() if store is None else store,
        settings.token,
        webhook=settings.webhook,
        api_url=settings.api_url,
        allowed_chats=settings.allowed_chats,
        group_rate=settings.group_rate,
        rate_window=rate_window,
        global_rate=settings.global_rate,
        max_chars=settings.max_chars,
    )
    app = web.Application()
    adapter.add_routes(app)
    return adapter, app


async def serve_telegram(settings: TelegramSettings) -> None:
    """Run the Telegram adapter until SIGTERM or SIGINT."""
    adapter, app = build_telegram(settings)
    await run_adapter(adapter, settings.http_host, settings.port, app, instance=settings.instance)

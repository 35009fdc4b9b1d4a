"""`parley slack`: the Slack adapter as a process (HTTP events or Socket Mode)."""

from __future__ import annotations

from adapters.slack import SlackAdapter, SlackAuthError
from bots.service import run_adapter
from bots.settings import SlackSettings
from core.errors import ConfigError
from core.queue.types import SendLimits, Store


def build_slack(
    settings: SlackSettings, store: Store | None = None, *, limits: SendLimits | None = None
) -> SlackAdapter:
    """The adapter; serve its `web_app()`. Without `store`, the settings' queue (Redis: the
    workers answer in other processes). `limits` replaces Slack's per-channel send rate
    (tests)."""
    return SlackAdapter(
        settings.queue.store() if store is None else store,
        bot_token=settings.bot_token,
        ingress=settings.ingress,
        command=settings.command,
        reset_verb=settings.reset_verb,
        api_url=settings.api_url,
        limits=limits,
        max_chars=settings.max_chars,
    )


async def serve_slack(settings: SlackSettings) -> None:
    """Run the Slack adapter, its routes, /healthz and /metrics until SIGTERM or SIGINT."""
    adapter = build_slack(settings)
    try:
        await run_adapter(
            adapter,
            settings.http_host,
            settings.port,
            adapter.web_app(),
            instance=settings.instance,
        )
    except SlackAuthError as exc:
        raise ConfigError(f"PARLEY_SLACK_{exc.which.upper()}_TOKEN: {exc}") from None

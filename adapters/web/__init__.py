"""The web group chat: rooms in the browser where people talk to each other and the bot."""

from adapters.web.server import WebAdapter

__all__ = ["WebAdapter"]

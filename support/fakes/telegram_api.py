"""A fake Telegram Bot API on 127.0.0.1, speaking the real JSON at `/bot<token>/<method>`.

Point python-telegram-bot at it with `Bot(token, base_url=fake.base_url)` (or parley's
`api_url=fake.api_url`). Tests inject updates (`add_update`, or `message` to build one the
way Telegram would, entities included), read what the bot sent (`sent`), make the next
calls of a method fail (`fail_next`), and deliver updates to a registered webhook
(`post_webhook`). sendMessage enforces Telegram's documented flood limits, each over a
sliding window: `global_limit` messages a second overall (30), `private_limit` a second to
one private chat (1; positive ids) and `group_limit` per `group_window` seconds to one group
(20 a minute; negative ids). A message over a limit gets a 429 with `retry_after`, counted
in `throttled`.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

JSON = dict[str, Any]

TOKEN = "123456:TEST-token-s3cr3t-value"
WEBHOOK_SECRET = "hook-secret_42"
# Parameters PTB sends JSON-encoded inside form fields, and those that are numbers.
_JSON_FIELDS = {"reply_parameters", "allowed_updates", "reply_markup", "entities"}
_INT_FIELDS = {"chat_id", "offset", "limit", "timeout", "message_thread_id", "max_connections"}
_BOOL_FIELDS = {"drop_pending_updates", "disable_notification"}


@dataclass
class Sent:
    """One message the bot sent (sendMessage accepted it)."""

    chat_id: int
    text: str
    message_id: int
    at: float
    reply_to: int | None = None  # the quoted message id, if any
    params: JSON = field(default_factory=dict)


@dataclass
class Failure:
    status: int
    description: str
    parameters: JSON | None = None


class FakeTelegram:
    """The fake Bot API server. Use as `async with FakeTelegram() as fake:`."""

    def __init__(
        self,
        token: str = TOKEN,
        *,
        username: str = "parley_bot",
        bot_id: int = 7000001,
        group_limit: int = 20,
        group_window: float = 60.0,
        private_limit: int = 1,
        private_window: float = 1.0,
        global_limit: int = 30,
        global_window: float = 1.0,
    ) -> None:
        self.token = token
        self.bot_user: JSON = {
            "id": bot_id,
            "is_bot": True,
            "first_name": "Parley",
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.group_limit = group_limit
        self.group_window = group_window
        self.private_limit = private_limit
        self.private_window = private_window
        self.global_limit = global_limit
        self.global_window = global_window
        self.sent: list[Sent] = []
        self.calls: list[str] = []  # methods called, in order
        self.requests: list[str] = []  # request paths, as the bot sent them
        self.webhook: JSON | None = None  # setWebhook's parameters while one is set
        self.throttled = 0  # sendMessage calls answered with 429
        self._updates: list[JSON] = []
        self._next_update = 1000
        self._next_message: dict[int, int] = defaultdict(lambda: 100)
        self._chats: dict[int, JSON] = {}
        self._chat_sends: dict[int, deque[float]] = defaultdict(deque)
        self._all_sends: deque[float] = deque()
        self._failures: dict[str, deque[Failure]] = defaultdict(deque)
        self._new_update = asyncio.Event()
        self._sent_event = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/bot{token}/{method}", self._handle)
        # Long polls in flight when a test ends need not be waited for.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def api_url(self) -> str:
        """The server's root, as parley's `telegram_api_url` setting takes it."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """python-telegram-bot's `base_url` (the token is appended)."""
        return f"{self.api_url}/bot"

    # -- what tests inject ------------------------------------------------------------------

    def chat(self, chat_id: int, kind: str | None = None, title: str = "") -> JSON:
        """The chat object for `chat_id` (negative: a group), remembered for replies."""
        if chat_id not in self._chats:
            kind = kind or ("supergroup" if chat_id < 0 else "private")
            chat: JSON = {"id": chat_id, "type": kind}
            if kind == "private":
                chat["first_name"] = f"user{chat_id}"
            else:
                chat["title"] = title or f"group {chat_id}"
            self._chats[chat_id] = chat
        return self._chats[chat_id]

    @staticmethod
    def user(user_id: int, username: str | None = None, first_name: str = "", **extra: Any) -> JSON:
        user: JSON = {"id": user_id, "is_bot": False, "first_name": first_name or f"User{user_id}"}
        if username:
            user["username"] = username
        return {**user, **extra}

    def message(
        self,
        chat_id: int,
        user: JSON | None,
        text: str | None = None,
        *,
        entities: list[JSON] | None = None,
        reply_to: JSON | None = None,
        **extra: Any,
    ) -> JSON:
        """A message as Telegram sends it; @mentions and a leading /command get their
        entities (offsets in UTF-16 code units) unless `entities` is given."""
        self._next_message[chat_id] += 1
        msg: JSON = {
            "message_id": self._next_message[chat_id],
            "date": int(time.time()),
            "chat": self.chat(chat_id),
        }
        if user is not None:
            msg["from"] = user
        if text is not None:
            msg["text"] = text
            found = entities if entities is not None else auto_entities(text)
            if found:
                msg["entities"] = found
        if reply_to is not None:
            msg["reply_to_message"] = reply_to
        msg.update(extra)
        return msg

    def add_update(self, update: JSON | None = None, **kinds: JSON) -> JSON:
        """Queue an update for getUpdates; `update_id` is assigned unless given.
        `fake.add_update(message=fake.message(...))` is the usual form."""
        update = dict(update or {}, **kinds)
        if "update_id" not in update:
            self._next_update += 1
            update["update_id"] = self._next_update
        self._updates.append(update)
        self._new_update.set()
        return update

    def bot_message(self, chat_id: int, text: str) -> JSON:
        """A message the bot sent earlier (for replies to it)."""
        return self.message(chat_id, self.bot_user, text)

    def fail_next(
        self,
        method: str,
        status: int,
        description: str,
        parameters: JSON | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `method` with an error."""
        for _ in range(times):
            self._failures[method].append(Failure(status, description, parameters))

    async def post_webhook(
        self, update: JSON | bytes, secret: str | None = None, url: str | None = None
    ) -> int:
        """Deliver an update (or raw bytes) to the registered webhook; returns the status.
        `secret` overrides the header the bot registered (None: send the registered one)."""
        target = url or (self.webhook or {}).get("url")
        assert target, "no webhook registered"
        if secret is None:
            secret = (self.webhook or {}).get("secret_token")
        headers = {"Content-Type": "application/json"}
        if secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        data = update if isinstance(update, bytes) else json.dumps(update).encode()
        async with (
            aiohttp.ClientSession() as session,
            session.post(target, data=data, headers=headers) as response,
        ):
            return response.status

    async def wait_sent(self, count: int, timeout: float = 10.0) -> list[Sent]:
        """Wait until at least `count` messages were sent; the messages sent."""
        deadline = time.monotonic() + timeout
        while len(self.sent) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(self.sent)} of {count} messages sent")
            self._sent_event.clear()
            try:
                await asyncio.wait_for(self._sent_event.wait(), left)
            except TimeoutError:
                continue
        return self.sent

    def pending_updates(self) -> int:
        return len(self._updates)

    # -- the API ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        self.calls.append(method)
        params = await _params(request)
        if self._failures[method]:
            failure = self._failures[method].popleft()
            return _error(failure.status, failure.description, failure.parameters)
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return _error(404, "Not Found")
        result: web.Response = await handler(params)
        return result

    async def _api_getMe(self, _: JSON) -> web.Response:
        return _ok(self.bot_user)

    async def _api_setWebhook(self, params: JSON) -> web.Response:
        if not str(params.get("url", "")).startswith(("https://", "http://")):
            return _error(400, "Bad Request: bad webhook: An HTTPS URL must be provided")
        self.webhook = params
        return _ok(True)

    async def _api_deleteWebhook(self, params: JSON) -> web.Response:
        self.webhook = None
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return _ok(True)

    async def _api_getUpdates(self, params: JSON) -> web.Response:
        if self.webhook:
            return _error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = params.get("offset")
        if offset is not None:
            # Asking from `offset` confirms every update before it: Telegram forgets them.
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        while not self._updates and time.monotonic() < deadline:
            self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
        limit = int(params.get("limit") or 100)
        return _ok(self._updates[:limit])

    async def _api_sendMessage(self, params: JSON) -> web.Response:
        chat_id = int(params["chat_id"])
        text = str(params.get("text") or "")
        if not text:
            return _error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return _error(400, "Bad Request: message is too long")
        now = time.monotonic()
        limit, window = (
            (self.group_limit, self.group_window)
            if chat_id < 0
            else (self.private_limit, self.private_window)
        )
        for recent, most, span in (
            (self._all_sends, self.global_limit, self.global_window),
            (self._chat_sends[chat_id], limit, window),
        ):
            while recent and recent[0] <= now - span:
                recent.popleft()
            if len(recent) >= most:
                self.throttled += 1
                wait = max(math.ceil(recent[0] + span - now), 1)
                return _error(429, f"Too Many Requests: retry after {wait}", {"retry_after": wait})
        self._all_sends.append(now)
        self._chat_sends[chat_id].append(now)
        self._next_message[chat_id] += 1
        message_id = self._next_message[chat_id]
        quoted = (params.get("reply_parameters") or {}).get("message_id")
        self.sent.append(Sent(chat_id, text, message_id, time.time(), quoted, params))
        self._sent_event.set()
        message: JSON = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": self.chat(chat_id),
            "from": self.bot_user,
            "text": text,
        }
        return _ok(message)


def auto_entities(text: str) -> list[JSON]:
    """MENTION entities for every @username and BOT_COMMAND for a leading /command."""
    found = []
    for match in re.finditer(r"(?<!\w)@\w{3,32}|^/\w+(@\w+)?", text):
        kind = "bot_command" if match.group().startswith("/") else "mention"
        found.append(
            {
                "type": kind,
                "offset": utf16_len(text[: match.start()]),
                "length": utf16_len(match.group()),
            }
        )
    return found


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


async def _params(request: web.Request) -> JSON:
    """Request parameters: PTB posts form fields with JSON-encoded complex values."""
    raw: dict[str, Any]
    if request.content_type == "application/json":
        raw = await request.json() if request.can_read_body else {}
    else:
        raw = dict(await request.post())
        raw.update(request.query)
    params: JSON = {}
    for key, value in raw.items():
        if isinstance(value, str) and key in _JSON_FIELDS:
            params[key] = json.loads(value)
        elif isinstance(value, str) and key in _INT_FIELDS:
            params[key] = int(float(value))
        elif isinstance(value, str) and key in _BOOL_FIELDS:
            params[key] = value.lower() == "true"
        else:
            params[key] = value
    return params


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(status: int, description: str, parameters: JSON | None = None) -> web.Response:
    body: JSON = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)

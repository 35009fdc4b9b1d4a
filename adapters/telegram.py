"""Telegram: updates in (long polling or a webhook), replies out through the Bot API.

In a group the bot answers messages that mention it (@username, or a text mention of the
bot user), replies to its own messages and `/ask question`; other chatter is ignored. In a
private chat it answers everything. `/start`, `/help` and `/reset` are handled here. Each
chat is one context; replies quote the message they answer, so a busy group sees who is
answered, and a group that has fallen behind Telegram's flood limit gets several answers
in one message. Sends are paced by Telegram's limits, with a margin (`limits_for`): about a
message a second to one person, 20 a minute to one group, 30 a second overall.

python-telegram-bot is used as a plain Bot API client (no `Application`): the adapter
owns the polling loop, and egress goes through the shared `Sender`, which keeps order,
deduplication and rate limits in the store where every process sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hmac
import logging
import re
import warnings
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Literal, NamedTuple

from aiohttp import web
from telegram import Bot, Chat, Message, MessageEntity, ReplyParameters, Update, User
from telegram import error as tg
from telegram.constants import ChatType
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from adapters.base import Adapter
from adapters.http import BODY_TIMEOUT, MAX_BODY, read_body
from core import gate
from core.errors import ConfigError, ParleyError, StoreUnavailable
from core.messages import ChatKey, Incoming, Reply
from core.queue.sender import RetryAfter, Undeliverable, body, coalesced_text, split_text
from core.queue.types import SendLimits, Store
from core.retry import Backoff, Stopped, retry

log = logging.getLogger("parley.telegram")

DEFAULT_API_URL = "https://api.telegram.org"
WEBHOOK_PATH = "/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Only messages: edits, channel posts, callbacks and the rest are never asked for (and are
# ignored, with a reason, should they arrive anyway).
ALLOWED_UPDATES = ("message",)
COMMAND = re.compile(r"/(\w+)(?:@(\w+))?(?:\s+|$)(.*)", re.DOTALL)
TOKEN_REFUSED = "Telegram refused the bot token; check it with @BotFather"
PRIVATE_RATE = (1, 1.0)  # messages per seconds to one person: about one a second
# Telegram's limits are approximate, and its clock is not ours: per-chat windows are
# stretched by this factor, so that no send is a limit's last plus one. (The Sender keeps
# its own margin below the overall rate.)
PACING_MARGIN = 1.1

GROUP_HELP = (
    "I'm a chat bot with my own small language model. Mention me (@{username} how are "
    "you?), reply to one of my messages, or write /ask followed by your question. "
    "/reset makes me forget our conversation in this chat."
)
PRIVATE_HELP = (
    "I'm a chat bot with my own small language model: just write to me. "
    "/reset makes me forget our conversation."
)

# python-telegram-bot and httpx log request URLs, which carry the token, and request
# parameters (setWebhook's secret) at INFO and DEBUG: keep those loggers above that.
QUIET_LOGGERS = {"httpx": logging.WARNING, "httpcore": logging.WARNING, "telegram": logging.INFO}


class Webhook(NamedTuple):
    """Webhook mode: the public HTTPS URL Telegram posts to, and the secret it sends."""

    url: str
    secret: str


def quiet_library_loggers() -> None:
    """Raise the HTTP libraries' loggers to where they no longer log URLs or parameters."""
    for name, level in QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        if logger.level < level:  # also when NOTSET; a stricter level set elsewhere stays
            logger.setLevel(level)


class TelegramAdapter(Adapter):
    """A Telegram bot, polling or receiving a webhook."""

    platform = "telegram"
    title = "Telegram"
    max_length = 4096
    coalesce = True
    # Network errors and 5xx (PTB's NetworkError; not its subclass BadRequest, since a 400
    # comes back on every try), and 429 with retry_after.
    unreachable = (tg.NetworkError, tg.RetryAfter)
    poll_backoff = (0.5, 30.0)  # seconds between getUpdates attempts while they fail
    body_timeout = BODY_TIMEOUT  # seconds a webhook's body may take to arrive

    def __init__(
        self,
        store: Store,
        token: str,
        *,
        webhook: Webhook | None = None,
        api_url: str = DEFAULT_API_URL,
        allowed_chats: Iterable[int] = (),
        group_rate: int = 20,
        rate_window: float = 60.0,
        global_rate: float = 30.0,
        max_chars: int = 1000,
        poll_timeout: int = 25,
    ) -> None:
        # The group limits are the stricter, so they are also the adapter's default.
        self.group_limits = SendLimits(per_chat=group_rate, window=rate_window * PACING_MARGIN)
        count, seconds = PRIVATE_RATE
        self.private_limits = SendLimits(per_chat=count, window=seconds * PACING_MARGIN)
        super().__init__(
            store,
            limits=self.group_limits,
            max_chars=max_chars,
            global_rate=global_rate,
        )
        quiet_library_loggers()  # before the Bot exists: its constructor logs the URL
        self.hook = webhook  # None: long polling
        self.allowed_chats = frozenset(allowed_chats)
        self.poll_timeout = poll_timeout
        self._secrets = [token, *([webhook.secret] if webhook else [])]
        self._secret = webhook.secret.encode() if webhook else b""
        self.bot = Bot(
            token,
            base_url=f"{api_url.rstrip('/')}/bot",
            request=HTTPXRequest(connection_pool_size=32),
            get_updates_request=HTTPXRequest(connection_pool_size=1),
        )
        self.me: User | None = None
        self._poller: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()  # set by `stop`: held updates stop waiting
        self._store_backoff = Backoff(log, "store")
        self._migrated: dict[str, str] = {}  # old group id: its supergroup's id

    @property
    def mode(self) -> Literal["polling", "webhook"]:
        return "polling" if self.hook is None else "webhook"

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """getMe, then set or delete the webhook. Raises `ConfigError` for a refused token,
        a PTB NetworkError or RetryAfter while Telegram cannot be reached (`run` tries again),
        `ParleyError` for any other refusal."""
        self._closing.clear()
        try:
            await self.bot.initialize()  # getMe: checks the token, tells us who we are
            self.me = self.bot.bot
            if self.hook is not None:
                await self.bot.set_webhook(
                    self.hook.url,
                    secret_token=self._secret.decode(),
                    allowed_updates=ALLOWED_UPDATES,
                )
            else:
                await self.bot.delete_webhook()  # getUpdates is refused while one is set
        except tg.InvalidToken:
            await self._shutdown_bot()
            raise ConfigError(TOKEN_REFUSED) from None
        except tg.TelegramError as exc:
            await self._shutdown_bot()
            if _unreachable(exc):
                raise
            raise ParleyError(f"Telegram Bot API: {self._mask(str(exc))}") from None
        log.info("Telegram bot @%s (id %d), %s mode", self.me.username, self.me.id, self.mode)
        if self.hook is None:
            self._poller = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        # A webhook stays registered: Telegram keeps the updates until we are back.
        self._closing.set()
        if self._poller:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        await self._shutdown_bot()

    async def _shutdown_bot(self) -> None:
        with contextlib.suppress(Exception):
            await self.bot.shutdown()

    def _mask(self, text: str) -> str:
        """`text` without the token or the webhook secret (for error messages)."""
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return text

    def describe(self, exc: BaseException) -> str:
        return self._mask(super().describe(exc))

    def wait_hint(self, exc: BaseException) -> float:
        return _seconds(exc) if isinstance(exc, tg.RetryAfter) else 0.0

    def limits_for(self, chat: ChatKey) -> SendLimits:
        """A private chat's (a person's id is positive) or a group's sending limits."""
        return self.group_limits if chat.chat.startswith("-") else self.private_limits

    def add_routes(self, app: web.Application) -> None:
        """The webhook receiver (webhook mode only)."""
        if self.hook is not None:
            app.router.add_post(WEBHOOK_PATH, self.webhook)

    # -- ingress ------------------------------------------------------------------------------

    async def _poll(self) -> None:
        """getUpdates until stopped. What waiting heals (network errors, 5xx, 429, 409 from
        another poller) is waited out, logged once per outage; anything else ends the
        adapter (a revoked token: a `ConfigError`)."""
        backoff = Backoff(log, "Telegram getUpdates", *self.poll_backoff)
        offset: int | None = None
        try:
            while True:
                updates = await retry(
                    functools.partial(self._get_updates, offset),
                    backoff=backoff,
                    stop=self._closing,
                    transient=(*self.unreachable, tg.Conflict),
                    retry_after=self.wait_hint,
                )
                for update in updates:
                    await self._deliver(update)
                    offset = update.update_id + 1  # confirms it: Telegram will not send it again
        except Stopped:
            return
        except Exception as exc:
            log.error("Telegram polling stopped: %s", self.describe(exc))
            self.fail(exc)

    async def _get_updates(self, offset: int | None) -> tuple[Update, ...]:
        try:
            return await self.bot.get_updates(
                offset=offset, timeout=self.poll_timeout, allowed_updates=ALLOWED_UPDATES
            )
        except tg.InvalidToken:
            raise ConfigError(TOKEN_REFUSED) from None
        except tg.BadRequest as exc:
            raise ParleyError(f"Telegram getUpdates: {self._mask(exc.message)}") from None

    async def _deliver(self, update: Update) -> None:
        """Handle one polled update. While the store cannot be reached, hold it (it stays
        unconfirmed) and try again; one that fails otherwise is logged and skipped."""
        try:
            await retry(
                functools.partial(self.handle, update),
                backoff=self._store_backoff,
                stop=self._closing,
                transient=(StoreUnavailable,),
            )
        except Stopped:
            raise
        except Exception:
            log.exception(
                "telegram: failed to handle update %d", update.update_id, extra=_fields(update)
            )

    async def webhook(self, request: web.Request) -> web.Response:
        """POST from Telegram: check the secret, then read the body (bounded), enqueue,
        answer."""
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not self._secret or not hmac.compare_digest(given, self._secret):
            self.rejected("bad_secret")
            return web.Response(status=403)
        try:
            data = await read_body(request, MAX_BODY, self.body_timeout)
        except web.HTTPException as exc:  # 413 too large, 408 too slow
            self.rejected("too_large" if exc.status == 413 else "too_slow")
            raise
        update = self._update(data)
        if update is None:
            self.rejected("malformed")
            return web.Response(status=400)
        if self.me is None:  # getMe has not answered yet: Telegram retries later
            return web.Response(status=503)
        try:
            await self.handle(update)
        except StoreUnavailable as exc:
            log.error(
                "store unreachable (%s); Telegram will redeliver update %d",
                exc,
                update.update_id,
                extra=_fields(update),
            )
            return web.Response(status=503)
        except Exception:  # a bad update: redelivering it would fail again
            if self._quiet.allow("failed") is not None:
                log.exception(
                    "telegram: failed to handle update %d", update.update_id, extra=_fields(update)
                )
        return web.Response(text="ok")

    def _update(self, data: bytes) -> Update | None:
        """The update in a webhook's body, or None if it is not one."""
        try:
            raw = gate.loads(data)
        except gate.Refused:
            return None
        if not isinstance(raw, dict) or not _is_int(raw.get("update_id")):
            return None
        try:
            return Update.de_json(raw, self.bot)
        except Exception:  # JSON in another shape than an update: its classes refuse it
            return None

    async def handle(self, update: Update) -> None:
        """Act on one update. Raises only when the store cannot be reached."""
        self.received()
        # A redelivered update (our 200 was lost) is recognised by the store: its question
        # is not queued again, its /help or /reset not answered again.
        await self._route(update)

    async def _route(self, update: Update) -> None:
        msg = update.message
        if msg is None:
            self.ignored(_kind(update))
            return
        if not _well_formed(msg):  # a webhook can be sent anything that parses
            self.ignored("malformed")
            return
        if self.allowed_chats and msg.chat_id not in self.allowed_chats:
            self.ignored("not_allowed")
            return
        if msg.migrate_to_chat_id:
            log.info(
                "group %s became supergroup %s",
                msg.chat_id,
                msg.migrate_to_chat_id,
                extra=_fields(update),
            )
            self._migrated[str(msg.chat_id)] = str(msg.migrate_to_chat_id)
            self.ignored("migrated")
            return
        user = msg.from_user
        if user is None or user.is_bot:  # other bots, channels and anonymous admins
            self.ignored("bot")
            return
        if msg.text is None:
            self.ignored("non_text" if msg.effective_attachment else "service")
            return
        # Surrogates become U+FFFD, one UTF-16 unit like them: entity offsets still hold.
        raw = gate.encodable(msg.text)
        private = msg.chat.type == ChatType.PRIVATE
        incoming = Incoming(
            ChatKey(self.platform, str(msg.chat_id)),
            str(user.id),
            gate.text(raw),
            str(update.update_id),
            sender_name=gate.name(f"@{user.username}" if user.username else user.first_name),
            reply_to=str(msg.message_id),
        )
        command = COMMAND.match(raw)
        if command:
            await self._command(incoming, command, private)
            return
        text, mentioned = self._strip_mentions(msg, raw)
        if private or mentioned or self._replies_to_me(msg):
            await self.ask(dataclasses.replace(incoming, text=text), how=self._how(private))
        else:
            self.ignored("chatter")

    async def _command(self, incoming: Incoming, command: re.Match[str], private: bool) -> None:
        name, target, rest = command.group(1).lower(), command.group(2), command.group(3)
        if target and target.lower() != self._username.lower():
            self.ignored("other_bot_command")
        elif name in ("start", "help"):
            await self.help(incoming, self._help(private))
        elif name == "reset":
            await self.reset(incoming)
        elif name == "ask":
            await self.ask(dataclasses.replace(incoming, text=rest), how="/ask your question")
        elif private:
            await self.help(incoming, self._help(private))
        else:
            self.ignored("unknown_command")

    @property
    def _username(self) -> str:
        return (self.me.username if self.me else None) or ""

    def _help(self, private: bool) -> str:
        return PRIVATE_HELP if private else GROUP_HELP.format(username=self._username)

    def _how(self, private: bool) -> str:
        return "just write your question" if private else f"@{self._username} your question"

    def _is_me(self, data: bytes, entity: MessageEntity) -> bool:
        if entity.type == MessageEntity.MENTION:
            # Entity offsets count UTF-16 code units.
            span = data[entity.offset * 2 : (entity.offset + entity.length) * 2]
            mention = span.decode("utf-16-le", errors="replace")
            return mention.lower() == f"@{self._username.lower()}"
        if entity.type == MessageEntity.TEXT_MENTION:
            return entity.user is not None and self.me is not None and entity.user.id == self.me.id
        return False

    def _strip_mentions(self, msg: Message, text: str) -> tuple[str, bool]:
        """The text without the bot's mentions, and whether there was one."""
        data = text.encode("utf-16-le")
        mine = [e for e in msg.entities if self._is_me(data, e)]
        for entity in sorted(mine, key=lambda e: e.offset, reverse=True):
            data = data[: entity.offset * 2] + data[(entity.offset + entity.length) * 2 :]
        if not mine:
            return text, False
        text = re.sub(r"[ \t]{2,}", " ", data.decode("utf-16-le", errors="replace"))
        return text.strip().lstrip(",:;").strip(), True

    def _replies_to_me(self, msg: Message) -> bool:
        quoted = msg.reply_to_message
        return bool(quoted and quoted.from_user and self.me and quoted.from_user.id == self.me.id)

    # -- egress -------------------------------------------------------------------------------

    async def send(self, replies: Sequence[Reply]) -> None:
        """One message: a reply quoting its question, or several replies, a line each,
        quoting the last question. Longer than Telegram takes: several messages."""
        last = replies[-1]
        text = body(last) if len(replies) == 1 else coalesced_text(replies)
        parts = split_text(text, self.max_length)
        await self.send_parts(
            (str(last.chat), last.in_reply_to),
            parts,
            lambda part: self._send_message(last.chat, part, last.reply_to),
        )

    async def _send_message(self, chat: ChatKey, text: str, reply_to: str) -> None:
        chat_id = self._migrated.get(chat.chat, chat.chat)
        quote = (
            ReplyParameters(int(reply_to), allow_sending_without_reply=True)
            if reply_to.isdigit()
            else None
        )
        try:
            try:
                await self.bot.send_message(int(chat_id), text, reply_parameters=quote)
            except tg.ChatMigrated as exc:
                log.warning(
                    "%s became supergroup %s; sending there",
                    chat,
                    exc.new_chat_id,
                    extra={"chat": str(chat)},
                )
                self._migrated[chat.chat] = str(exc.new_chat_id)
                await self.bot.send_message(exc.new_chat_id, text, reply_parameters=quote)
        except tg.RetryAfter as exc:
            raise RetryAfter(_seconds(exc)) from None
        except tg.Forbidden as exc:  # blocked by the user, removed from the group
            raise Undeliverable(f"Telegram refused: {exc.message}") from None
        except tg.BadRequest as exc:  # chat not found, ...: the same request fails again
            raise Undeliverable(f"Telegram refused: {exc.message}") from None


def _is_int(value: object) -> bool:
    """Whether `value` is an integer as the Bot API sends ids (64-bit at most)."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63


def _well_formed(msg: Message) -> bool:
    """Whether the fields parley reads have the types the Bot API documents."""
    chat, user = msg.chat, msg.from_user
    return (
        isinstance(chat, Chat)
        and _is_int(chat.id)
        and _is_int(msg.message_id)
        and isinstance(msg.text, str | None)
        and _is_int(msg.migrate_to_chat_id or 0)
        and (
            user is None
            or (
                isinstance(user, User)
                and _is_int(user.id)
                and isinstance(user.username, str | None)
                and isinstance(user.first_name, str)
            )
        )
        and all(
            isinstance(e, MessageEntity) and _is_int(e.offset) and _is_int(e.length)
            for e in msg.entities
        )
    )


def _unreachable(exc: tg.TelegramError) -> bool:
    """Whether waiting may heal `exc`: Telegram unreachable, failing (5xx) or asking to wait."""
    return isinstance(exc, tg.RetryAfter) or (
        isinstance(exc, tg.NetworkError) and not isinstance(exc, tg.BadRequest)
    )


def _seconds(exc: tg.RetryAfter) -> float:
    """retry_after is an int or a timedelta, depending on PTB's version and PTB_TIMEDELTA."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _fields(update: Update) -> dict[str, str]:
    """Log fields naming the update (as the queue's message id) and its chat."""
    fields = {"message_id": str(update.update_id)}
    if update.effective_chat:
        fields["chat"] = f"telegram:{update.effective_chat.id}"
    return fields


def _kind(update: Update) -> str:
    """Why an update without a new message is ignored."""
    if update.edited_message or update.edited_channel_post:
        return "edited"
    if update.channel_post:
        return "channel"
    if update.callback_query:
        return "callback"
    return "other_update"

"""Slack: a slash command and @-mentions in; replies out through response_url or
chat.postMessage.

Ingress runs through slack-bolt, which verifies signatures (HTTP mode), answers Slack's
url_verification and calls auth.test; its requests reach it from our aiohttp app
(`POST /slack/events`, for events and commands alike) or over Socket Mode. Each listener
queues the message *before* it acknowledges: a queue write takes milliseconds, well inside
Slack's 3 seconds, and doing it first keeps a channel's questions in the order they arrived and
makes a failed write visible (Slack retries the event; a command's asker gets an apology).
A write still unanswered after `ENQUEUE_TIMEOUT` is not abandoned: the command is acked
without a word and its asker hears of a failure, if any, through the response_url; an event
gets an error, and Slack's retry is recognised as a duplicate should the write succeed.

Answers to a command go to its response_url, for the channel to see; help goes to the asker
alone. slack-bolt and slack_sdk log with loggers of their own (`LIBRARY_LOGGERS`), kept at
WARNING and without URLs, so no request body, message text or response_url reaches the logs.

Chats are `team:channel` (an app installed in several workspaces never mixes them up); a
mention's context is its thread, a slash command's the channel. Dedup keys: `event_id` for
events (Slack retries with the same one), `trigger_id` for slash commands (they have no
event id, and a trigger id is unique per invocation).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from adapters.base import Adapter
from adapters.http import BODY_TIMEOUT, MAX_BODY, read_body
from core import gate
from core.errors import ConfigError, ParleyError
from core.messages import ChatKey, Incoming, Reply, ReplyKind
from core.queue.sender import RetryAfter, Undeliverable, body, split_text
from core.queue.types import Enqueued, SendLimits, Store

log = logging.getLogger("parley.slack")

EVENTS_PATH = "/slack/events"
DEFAULT_API_URL = "https://slack.com/api/"
# chat.postMessage allows about one message per second per channel, with short bursts:
# 20 per 20 s keeps that average and lets a burst of 20 through; a 429 still defers the
# channel for as long as Slack asks.
SEND_LIMITS = SendLimits(per_chat=20, window=20.0)
# A response_url works for 30 minutes; a minute's margin covers clock skew and the send.
RESPONSE_URL_TTL = 29 * 60.0
ENQUEUE_TIMEOUT = 2.0  # seconds; the ack must reach Slack within 3

# slack_bolt sets its loggers' levels from the root logger's when the app is built, and
# logs a refused request's body (message text, a usable response_url) at INFO; slack_sdk's
# clients log URLs at INFO when they retry, if their logger's own level is unset. The
# libraries get these loggers instead, at WARNING whatever the root logger says, and their
# records lose any URL. (bolt's app logger is named after the app: not "parley".)
BOLT_LOGGER = "slack_bolt.parley"
SDK_LOGGER = "slack_sdk.parley"
LIBRARY_LOGGERS = ("slack_bolt", "slack_sdk", BOLT_LOGGER, SDK_LOGGER)
URL = re.compile(r"\b(?:https?|wss?)://[^\s'\"<>)]+", re.IGNORECASE)

UNAVAILABLE_TEXT = "Sorry, I can't take questions right now; please try again in a minute."
RATE_LIMITED_TEXT = "You're asking faster than I can answer; please wait a minute."

# chat.postMessage errors that no retry will cure.
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "msg_too_long",
        "no_text",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
        "cannot_reply_to_message",
        "team_access_not_granted",
        "ekm_access_denied",
    }
)
AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
# Web API errors that waiting heals (besides HTTP 5xx and 429).
SERVER_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)

SIGNATURE_WINDOW = 300.0  # seconds: Slack's requests are at most five minutes old
SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
# Slack's ids: teams, channels, users, events (T012AB3C4, C012AB3CD, U012A3CDE, Ev012...).
SLACK_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")
TRIGGER_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,9}")
RESPONSE_URL = re.compile(r"https?://[!-~]{1,1000}")

_MARKUP = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


@dataclass(frozen=True)
class HttpMode:
    """Slack posts events and commands to us; requests are signed with `signing_secret`."""

    signing_secret: str


@dataclass(frozen=True)
class SocketMode:
    """We connect to Slack over a websocket, opened with the xapp- `app_token`."""

    app_token: str


class SlackAuthError(ConfigError):
    """Slack refused one of the tokens (`which`: "bot" or "app")."""

    def __init__(self, which: str, error: str) -> None:
        super().__init__(f"Slack refused the {which} token ({error})")
        self.which = which


class SlackSendError(Exception):
    """A transient failure to deliver (5xx, an unexpected answer): retried by the Sender."""


class SlackUnavailable(Exception):
    """Slack answered a call with a server error (5xx) or asked to wait (429): waiting
    heals it."""

    def __init__(self, what: str, retry_after: float = 0.0) -> None:
        super().__init__(what)
        self.retry_after = retry_after


# -- text ------------------------------------------------------------------------------------


def to_plain(text: str, bot_user_id: str = "") -> str:
    """Slack's message markup as plain text for the model: the bot's own mention dropped,
    other mentions, channels and links as their labels, &amp; &lt; &gt; decoded."""

    def label(match: re.Match[str]) -> str:
        target, name = match.group(1), match.group(2)
        if bot_user_id and target == f"@{bot_user_id}":
            return ""
        if name:
            return target[0] + name.lstrip("@#") if target[:1] in ("@", "#") else name
        if target.startswith("!"):  # <!here>, <!channel>
            return "@" + target[1:]
        return target

    plain = _MARKUP.sub(label, text)
    return plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def escape(text: str) -> str:
    """Text shown as typed: never a mention, an @channel ping or a link in disguise."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def command_text(reply: Reply) -> str:
    """A slash command's answer, quoting the asker's question (Slack does not show it)."""
    text = escape(body(reply))
    if not reply.question:
        return text
    first, *rest = escape(reply.question).splitlines() or [""]
    quote = "\n".join([f"> <@{reply.asker}>: {first}", *(f"> {line}" for line in rest)])
    return f"{quote}\n{text}"


class QuietLibrary(logging.Filter):
    """On the libraries' loggers (bolt copies it to each of its own): nothing below
    WARNING, and URLs, response_urls among them, replaced by "<url>"."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        record.msg, record.args = URL.sub("<url>", record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = URL.sub("<url>", record.exc_text)
        return True


def library_logger(name: str) -> logging.Logger:
    """`name`'s logger at WARNING at least, with `QuietLibrary` on it."""
    logger = logging.getLogger(name)
    if logger.level < logging.WARNING:  # also when NOTSET; a stricter level stays
        logger.setLevel(logging.WARNING)
    if not any(isinstance(f, QuietLibrary) for f in logger.filters):
        logger.addFilter(QuietLibrary())
    return logger


def channel_of(chat: ChatKey) -> str:
    return chat.chat.rpartition(":")[2]


def _chat(team: object, channel: object) -> ChatKey:
    team = gate.ident(team, SLACK_ID, "team")
    return ChatKey("slack", f"{team}:{gate.ident(channel, SLACK_ID, 'channel')}")


def _check_shape(body: str, content_type: str) -> None:
    """Raise `gate.Refused` for a body bolt could not take apart: JSON that is not an object
    or nests too deep, an event that is not an object (in a form, its `payload` JSON)."""
    if content_type == "application/x-www-form-urlencoded":
        payload = urllib.parse.parse_qs(body).get("payload")
        if not payload:
            return
        body = payload[0]
    data = gate.loads(body)
    if not isinstance(data, dict) or not isinstance(data.get("event", {}), dict):
        raise gate.Refused("malformed")


def _retry_after(headers: Mapping[str, Any] | None) -> float:
    try:
        return max(float((headers or {}).get("Retry-After", 1)), 1.0)
    except (TypeError, ValueError):
        return 1.0


def _error_of(exc: SlackApiError) -> str:
    data = getattr(exc.response, "data", None)
    return str(data.get("error", "")) if isinstance(data, dict) else ""


def _refusal(exc: SlackApiError, which: str, method: str) -> Exception:
    """What a failed call made while starting means: a refused token (`SlackAuthError`),
    Slack failing or busy (`SlackUnavailable`: wait), or another refusal."""
    error, status = _error_of(exc), exc.response.status_code
    if error in AUTH_ERRORS or (which == "app" and error == "not_allowed_token_type"):
        return SlackAuthError(which, error)
    if status == 429 or error == "ratelimited":
        return SlackUnavailable(f"{method}: rate limited", _retry_after(exc.response.headers))
    if status >= 500 or error in SERVER_ERRORS:
        return SlackUnavailable(f"{method}: HTTP {status} {error}".rstrip())
    return ParleyError(f"Slack refused {method}: {error or f'HTTP {status}'}")


def _forget(tasks: set[asyncio.Task[Enqueued]]) -> Callable[[asyncio.Task[Enqueued]], None]:
    """A done-callback taking a finished write out of `tasks` (its error, if any, is
    someone else's to report: the listener's or the follow-up's)."""

    def done(task: asyncio.Task[Enqueued]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning

    return done


# -- the adapter -----------------------------------------------------------------------------


class SlackAdapter(Adapter):
    """A slash command and app mentions, over HTTP (signed requests) or Socket Mode."""

    platform = "slack"
    title = "Slack"
    max_length = 3000
    coalesce = False  # every reply has its own destination (a response_url or a thread)
    unreachable = (aiohttp.ClientError, ConnectionError, TimeoutError, SlackUnavailable)

    def __init__(
        self,
        store: Store,
        *,
        bot_token: str,
        ingress: HttpMode | SocketMode,
        command: str = "/ask",
        reset_verb: str = "reset",
        api_url: str = DEFAULT_API_URL,
        limits: SendLimits | None = None,
        max_chars: int = 1000,
        concurrency: int = 16,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(
            store, limits=limits or SEND_LIMITS, max_chars=max_chars, concurrency=concurrency
        )
        for name in LIBRARY_LOGGERS:  # before the app exists: bolt copies the levels then
            library_logger(name)
        self.mode: Literal["http", "socket"] = "http" if isinstance(ingress, HttpMode) else "socket"
        self.command = command
        self.reset_verb = reset_verb.lower()
        self.timeout = timeout
        self.body_timeout = BODY_TIMEOUT  # seconds a request's body may take to arrive
        self.bot_user_id = ""
        # HTTP mode checks signatures itself too, to refuse a forged request before bolt parses it.
        signing_secret = ingress.signing_secret if isinstance(ingress, HttpMode) else ""
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self._app_token = ingress.app_token if isinstance(ingress, SocketMode) else ""
        self._session: aiohttp.ClientSession | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._writes: set[asyncio.Task[Enqueued]] = set()  # queue writes outliving an ack
        self._follow_ups: set[asyncio.Task[None]] = set()
        self.client = AsyncWebClient(
            token=bot_token,
            base_url=api_url.rstrip("/") + "/",
            timeout=int(timeout),
            logger=logging.getLogger(SDK_LOGGER),
        )
        self.app = AsyncApp(
            client=self.client,
            signing_secret=signing_secret,
            # Listeners run before the response, so the ack follows the queue write.
            process_before_response=True,
            request_verification_enabled=self.mode == "http",  # Socket Mode has no signatures
            name=BOLT_LOGGER,
            logger=logging.getLogger(BOLT_LOGGER),
        )
        self.app.command(command)(self._on_command)
        self.app.event("app_mention")(self._on_mention)
        # A mention also arrives as a `message` event if that is subscribed: answer it once,
        # from app_mention, and acknowledge the rest so Slack does not retry them.
        self.app.event("message")(self._on_message)

    # -- life cycle -------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        """The aiohttp app to serve: Slack's events and commands in HTTP mode."""
        app = web.Application()
        if self.mode == "http":
            app.router.add_post(EVENTS_PATH, self._handle_http)
        return app

    async def start(self) -> None:
        """auth.test, then (Socket Mode) connect. Raises `SlackAuthError` for a refused
        token, one of `unreachable` while Slack cannot be reached or is failing (`run`
        tries again), `ParleyError` for another refusal."""
        self._http()
        try:
            try:
                auth = await self.client.auth_test()
            except SlackApiError as exc:
                raise _refusal(exc, "bot", "auth.test") from None
            self.bot_user_id = str(auth.get("user_id") or "")
            log.info(
                "Slack: signed in as %s (%s) in team %s",
                auth.get("user"),
                self.bot_user_id,
                auth.get("team_id"),
            )
            if self.mode == "socket":
                await self._connect_socket()
        except BaseException:
            await self.stop()
            raise

    async def _connect_socket(self) -> None:
        handler = AsyncSocketModeHandler(self.app, self._app_token, web_client=self.client)
        self._socket = handler
        try:
            # Asked here, not inside connect(), which would retry a refused token forever.
            handler.client.wss_uri = await handler.client.issue_new_wss_url()
        except SlackApiError as exc:
            raise _refusal(exc, "app", "apps.connections.open") from None
        await handler.connect_async()
        log.info("Slack: Socket Mode connected")

    async def stop(self) -> None:
        # Queue writes that outlived their ack, and the apologies after them, finish first.
        if pending := self._writes | self._follow_ups:
            await asyncio.wait(pending, timeout=2 * ENQUEUE_TIMEOUT)
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        if self._session is not None:
            await self._session.close()
            self._session = None
            self.client.session = None

    def wait_hint(self, exc: BaseException) -> float:
        return exc.retry_after if isinstance(exc, SlackUnavailable) else 0.0

    async def health(self) -> str | None:
        reason = await super().health()
        socket = self._socket  # reconnects by itself; unhealthy while it cannot
        if reason is None and socket is not None and not await socket.client.is_connected():
            return "Socket Mode disconnected"
        return reason

    def _http(self) -> aiohttp.ClientSession:
        """One HTTP session for the Web API and response_urls, instead of one per call."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            self.client.session = self._session
        return self._session

    # -- ingress ------------------------------------------------------------------------------

    async def _handle_http(self, request: web.Request) -> web.StreamResponse:
        # The signature covers the body, but a request without a fresh timestamp and a
        # well-formed signature is refused before a byte of its body is read.
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        fresh = abs(time.time() - gate.number(timestamp)) <= SIGNATURE_WINDOW
        if not (fresh and SIGNATURE.fullmatch(signature)):
            self.rejected("bad signature")
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            raw = await read_body(request, MAX_BODY, self.body_timeout)
        except web.HTTPException as exc:  # 413 too large, 408 too slow
            self.rejected("too large" if exc.status == 413 else "too slow")
            raise
        if self._verifier is None or not self._verifier.is_valid(raw, timestamp, signature):
            self.rejected("bad signature")
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            body = raw.decode("utf-8")
            _check_shape(body, request.content_type)
            bolt_request = AsyncBoltRequest(
                body=body, query=request.query_string, headers=dict(request.headers)
            )
            response = await self.app.async_dispatch(bolt_request)
        except (ValueError, TypeError, AttributeError):  # UnicodeDecodeError, gate.Refused
            # Signed, but not a request of a shape Slack sends, or bolt's parsing gave up on
            # it (its listeners' own errors are answered inside bolt, with a 500).
            self.rejected("malformed body")
            return web.json_response({"error": "malformed request"}, status=400)
        return await to_aiohttp_response(response)

    async def _on_command(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        self.received()
        try:
            message = self._command_message(body)
        except gate.Refused:
            self.ignored("incomplete command")
            await ack()
            return
        write = self._write(message, how=f"type {self.command} and your question")
        try:
            result = await asyncio.wait_for(asyncio.shield(write), ENQUEUE_TIMEOUT)
        except TimeoutError:
            # Slack must have its ack now. The write goes on: nothing is said until its
            # outcome is known, then only if it failed.
            follow_up = asyncio.create_task(self._follow_up(message, write))
            self._follow_ups.add(follow_up)
            follow_up.add_done_callback(self._follow_ups.discard)
            await ack()
            return
        except Exception as exc:
            log.error("could not queue a slash command in %s: %r", message.chat, exc)
            await ack(text=UNAVAILABLE_TEXT, response_type="ephemeral")
            return
        if result is Enqueued.RATE_LIMITED:
            await ack(text=RATE_LIMITED_TEXT, response_type="ephemeral")
        else:
            await ack()

    async def _follow_up(self, message: Incoming, write: asyncio.Task[Enqueued]) -> None:
        """Tell a command's asker, once its slow queue write is over, if it failed."""
        try:
            result = await write
        except Exception as exc:
            log.error("could not queue a slash command in %s: %r", message.chat, exc)
            text = UNAVAILABLE_TEXT
        else:
            if result is not Enqueued.RATE_LIMITED:
                return
            text = RATE_LIMITED_TEXT
        try:
            await self._respond(message.reply_to, text, ephemeral=True)
        except Exception as exc:  # one try: the apology is not worth a retry loop
            log.warning("could not tell the asker in %s: %r", message.chat, exc)

    async def _on_mention(
        self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        self.received()
        if event.get("bot_id"):  # another bot: never start a conversation between bots
            self.ignored("from a bot")
            return
        try:
            message = self._mention_message(body, event, context.bot_user_id or self.bot_user_id)
        except gate.Refused:
            self.ignored("incomplete mention")
            return
        # An exception here (the write failed, or is still unanswered) answers Slack with a
        # 500, and Slack retries the event later: a write that succeeded after all makes the
        # retry a duplicate, which is dropped.
        write = self._write(message, how="mention me with a question")
        await asyncio.wait_for(asyncio.shield(write), ENQUEUE_TIMEOUT)

    async def _on_message(self) -> None:
        self.ignored("message event")

    def _command_message(self, body: Mapping[str, Any]) -> Incoming:
        """A slash command as a question; raises `gate.Refused` for a missing or malformed
        field."""
        return Incoming(
            _chat(body.get("team_id"), body.get("channel_id")),
            sender=gate.ident(body.get("user_id"), SLACK_ID, "user"),
            text=to_plain(gate.text(body.get("text") or "")).strip(),
            message_id=gate.ident(body.get("trigger_id"), TRIGGER_ID, "trigger"),
            sender_name=gate.name(body.get("user_name") or ""),
            reply_to=gate.ident(body.get("response_url"), RESPONSE_URL, "response_url"),
        )

    def _mention_message(
        self, body: Mapping[str, Any], event: Mapping[str, Any], bot_user_id: str
    ) -> Incoming:
        """A mention as a question; raises `gate.Refused` for a missing or malformed field."""
        ts = gate.ident(event.get("ts"), TS, "ts")
        return Incoming(
            _chat(body.get("team_id") or event.get("team"), event.get("channel")),
            sender=gate.ident(event.get("user"), SLACK_ID, "user"),
            text=to_plain(gate.text(event.get("text") or ""), bot_user_id).strip(),
            message_id=gate.ident(body.get("event_id"), SLACK_ID, "event"),
            # a top-level mention starts a thread
            thread=gate.ident(event.get("thread_ts") or ts, TS, "ts"),
        )

    def _write(self, message: Incoming, how: str) -> asyncio.Task[Enqueued]:
        """Queue a question, or a reset or the help, in a task of its own: waiting for it
        may end before it does, and it must not be cut short then (the store may have taken
        the message already)."""
        task = asyncio.create_task(self._take(message, how))
        self._writes.add(task)
        task.add_done_callback(_forget(self._writes))
        return task

    async def _take(self, message: Incoming, how: str) -> Enqueued:
        # The store drops a redelivered id: a question, a reset or a help request.
        if message.text.lower() == self.reset_verb:
            return await self.reset(message)
        return await self.ask(message, how=how)

    # -- egress -------------------------------------------------------------------------------

    async def send(self, replies: Sequence[Reply]) -> None:
        for reply in replies:
            if reply.reply_to and reply.kind is ReplyKind.SLOW_DOWN:
                continue  # the command's ack already told the asker, privately
            if reply.reply_to:
                await self._answer_command(reply)
            else:
                await self.send_parts(
                    (str(reply.chat), reply.in_reply_to),
                    split_text(escape(body(reply)), self.max_length),
                    functools.partial(self._post, reply.chat, thread=reply.thread),
                )

    async def _answer_command(self, reply: Reply) -> None:
        """Through the command's response_url while Slack takes it (30 minutes, 5 uses),
        then in the channel. Help is for the asker alone: it never goes to the channel."""
        private = reply.kind is ReplyKind.HELP
        usable = time.time() - reply.received_at < RESPONSE_URL_TTL
        told = False

        async def send(part: str) -> None:
            nonlocal usable, told
            if usable and await self._respond(reply.reply_to, part, ephemeral=private):
                return
            usable = False
            if not told:
                told = True
                what = "the help is dropped" if private else "posting in the channel"
                log.info("response_url for %s expired or used up: %s", reply.chat, what)
            if not private:
                await self._post(reply.chat, part, "")

        parts = split_text(command_text(reply), self.max_length)
        await self.send_parts((str(reply.chat), reply.in_reply_to), parts, send)

    async def _respond(self, url: str, text: str, ephemeral: bool = False) -> bool:
        """Post to a command's response_url; False when it has expired or been used up."""
        hook = AsyncWebhookClient(
            url,
            session=self._http(),
            timeout=int(self.timeout),
            logger=logging.getLogger(SDK_LOGGER),
        )
        try:
            response = await hook.send(
                text=text, response_type="ephemeral" if ephemeral else "in_channel"
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Its message may hold the URL, which lets anyone post in the channel.
            raise SlackSendError(f"response_url: {type(exc).__name__}") from None
        status, answer = response.status_code, (response.body or "").strip()
        if status == 200:
            return True
        if status == 429:
            raise RetryAfter(_retry_after(response.headers))
        if status in (404, 410) or answer in ("expired_url", "used_url"):
            return False
        if status >= 500:
            raise SlackSendError(f"response_url: HTTP {status}")
        raise Undeliverable(f"response_url: HTTP {status} {answer[:100]}")

    async def _post(self, chat: ChatKey, text: str, thread: str) -> None:
        self._http()
        try:
            await self.client.chat_postMessage(
                channel=channel_of(chat), text=text, thread_ts=thread or None
            )
        except SlackApiError as exc:
            error, status = _error_of(exc), exc.response.status_code
            if status == 429 or error == "ratelimited":
                raise RetryAfter(_retry_after(exc.response.headers)) from None
            if error in PERMANENT_ERRORS:
                raise Undeliverable(f"chat.postMessage: {error}") from None
            raise SlackSendError(f"chat.postMessage: HTTP {status} {error}".rstrip()) from None

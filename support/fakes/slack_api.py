"""A fake Slack on 127.0.0.1 for tests, and a client that calls the adapter as Slack does.

`FakeSlack` speaks the Web API's JSON for the methods parley uses (auth.test,
chat.postMessage, apps.connections.open), serves slash commands' response_urls and a Socket
Mode websocket, and records what it was sent. Tests steer it: a 429 for a channel or a
response_url (now, or after some accepted posts), a channel error, an expired response_url.
A response_url message is ephemeral (shown to the asker alone) unless its `response_type` is
`in_channel`, as on Slack. `SlackCaller` posts slash commands (form-encoded) and event
callbacks (JSON) to the adapter, signed like Slack (`v0:{timestamp}:{body}`, HMAC-SHA256).
`SlackRig` runs an adapter against both, with an in-process worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from adapters.ops import serve
from adapters.slack import EVENTS_PATH, HttpMode, SlackAdapter
from core.queue.types import Store
from core.queue.worker import Respond, Worker

BOT_TOKEN = "xoxb-1111-2222-fakebottokensecret"
APP_TOKEN = "xapp-1-A1-3333-fakeapptokensecret"
SIGNING_SECRET = "f4k3s1gn1ngs3cr3t0123456789abcdef"
TEAM, BOT_USER = "T1", "UBOT"
RESPONSE_URL_USES = 5  # Slack's limit per response_url
RESPONSE_URL_TTL = 30 * 60.0


@dataclass
class Posted:
    """A message chat.postMessage accepted."""

    channel: str
    text: str
    thread_ts: str | None
    at: float


@dataclass
class Responded:
    """A message a response_url accepted."""

    url: str
    body: dict[str, Any]
    at: float

    @property
    def text(self) -> str:
        return str(self.body.get("text", ""))

    @property
    def ephemeral(self) -> bool:
        """Shown to the asker alone: Slack's default, unless `response_type` is in_channel."""
        return self.body.get("response_type", "ephemeral") != "in_channel"


@dataclass
class _ResponseUrl:
    created: float
    uses: int = 0


@dataclass
class _Limit:
    """A 429 (Retry-After: `seconds`) for the request after `after` accepted ones."""

    seconds: float
    after: int = 0


@dataclass
class FakeSlack:
    """The Slack side: Web API, response_urls, Socket Mode."""

    bot_token: str = BOT_TOKEN
    app_token: str = APP_TOKEN
    messages: list[Posted] = field(default_factory=list)
    responses: list[Responded] = field(default_factory=list)
    calls: list[tuple[str, int, float]] = field(default_factory=list)  # (what, status, when)
    socket_acks: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    refuse_connections: bool = False  # apps.connections.open says invalid_auth
    _auth_failures: list[int] = field(default_factory=list)
    _rate_limits: dict[str, list[_Limit]] = field(default_factory=dict)
    _url_limits: dict[str, list[_Limit]] = field(default_factory=dict)
    _channel_errors: dict[str, str] = field(default_factory=dict)
    _server_errors: int = 0
    _urls: dict[str, _ResponseUrl] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _runner: web.AppRunner | None = None
    _socket: web.WebSocketResponse | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def start(self) -> FakeSlack:
        app = web.Application()
        app.router.add_post("/api/auth.test", self._auth_test)
        app.router.add_post("/api/chat.postMessage", self._post_message)
        app.router.add_post("/api/apps.connections.open", self._connections_open)
        app.router.add_post("/response/{id}", self._response_url)
        app.router.add_get("/socket", self._websocket)
        self._runner = await serve(app, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def close(self) -> None:
        await self.close_socket()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    # -- test controls ------------------------------------------------------------------------

    def response_url(self) -> str:
        """A fresh response_url, as Slack puts in a slash command."""
        url = f"{self.url}/response/{next(self._ids)}"
        self._urls[url] = _ResponseUrl(time.time())
        return url

    def expire(self, url: str) -> None:
        """Age `url` past Slack's 30 minutes."""
        self._urls[url].created -= RESPONSE_URL_TTL + 1

    def rate_limit(self, channel: str, seconds: float, times: int = 1, after: int = 0) -> None:
        """Answer `times` posts to `channel` with 429 and Retry-After: `seconds`, once
        `after` more posts were accepted."""
        limits = [_Limit(seconds, after)] + [_Limit(seconds) for _ in range(times - 1)]
        self._rate_limits.setdefault(channel, []).extend(limits)

    def rate_limit_url(self, url: str, seconds: float, after: int = 0) -> None:
        """Answer a post to the response_url `url` with 429 once `after` more were accepted."""
        self._url_limits.setdefault(url, []).append(_Limit(seconds, after))

    def fail_channel(self, channel: str, error: str) -> None:
        """Answer posts to `channel` with ok:false and `error` (e.g. channel_not_found)."""
        self._channel_errors[channel] = error

    def fail_auth_test(self, status: int = 503, times: int = 1) -> None:
        """Answer the next `times` auth.test calls with HTTP `status` (429: Retry-After 1)."""
        self._auth_failures.extend([status] * times)

    def fail_server(self, times: int = 1) -> None:
        """Answer the next `times` chat.postMessage calls with HTTP 500."""
        self._server_errors += times

    def posted_to(self, url: str) -> list[str]:
        return [r.text for r in self.responses if r.url == url]

    async def wait_for(self, done: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `done()` holds after some request, or fail after `timeout` seconds."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(done), timeout)

    async def close_socket(self) -> None:
        """Drop the Socket Mode connection, as Slack does now and then."""
        if self._socket is not None:
            await self._socket.close()
            self._socket = None

    async def push(self, envelope: dict[str, Any]) -> None:
        """Send a Socket Mode envelope to the connected client."""
        if self._socket is None:
            raise RuntimeError("no Socket Mode client connected")
        await self._socket.send_json(envelope)

    # -- the Web API --------------------------------------------------------------------------

    async def _changed_now(self, what: str, status: int) -> None:
        self.calls.append((what, status, time.time()))
        async with self._changed:
            self._changed.notify_all()

    def _authorised(self, request: web.Request, token: str) -> bool:
        return request.headers.get("Authorization") == f"Bearer {token}"

    async def _auth_test(self, request: web.Request) -> web.Response:
        if self._auth_failures:
            status = self._auth_failures.pop(0)
            await self._changed_now("auth.test", status)
            if status == 429:
                return web.json_response(
                    {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"}
                )
            return web.Response(status=status, text="service unavailable")
        if not self._authorised(request, self.bot_token):
            await self._changed_now("auth.test", 200)
            return web.json_response({"ok": False, "error": "invalid_auth"})
        await self._changed_now("auth.test", 200)
        return web.json_response(
            {
                "ok": True,
                "url": "https://fake.slack.com/",
                "team": "Fake Team",
                "user": "parley",
                "team_id": TEAM,
                "user_id": BOT_USER,
                "bot_id": "B1",
                "is_enterprise_install": False,
            }
        )

    async def _post_message(self, request: web.Request) -> web.Response:
        if not self._authorised(request, self.bot_token):
            return web.json_response({"ok": False, "error": "invalid_auth"})
        data = await request.json()
        channel = str(data.get("channel", ""))
        if self._server_errors:
            self._server_errors -= 1
            await self._changed_now("chat.postMessage", 500)
            return web.Response(status=500, text="internal error")
        if seconds := _limited(self._rate_limits.get(channel)):
            await self._changed_now("chat.postMessage", 429)
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": f"{seconds:g}"},
            )
        if channel in self._channel_errors:
            await self._changed_now("chat.postMessage", 200)
            return web.json_response({"ok": False, "error": self._channel_errors[channel]})
        if not data.get("text"):
            return web.json_response({"ok": False, "error": "no_text"})
        ts = f"{time.time():.6f}"
        self.messages.append(Posted(channel, data["text"], data.get("thread_ts"), time.time()))
        await self._changed_now("chat.postMessage", 200)
        return web.json_response(
            {"ok": True, "channel": channel, "ts": ts, "message": {"text": data["text"], "ts": ts}}
        )

    async def _connections_open(self, request: web.Request) -> web.Response:
        if self.refuse_connections or not self._authorised(request, self.app_token):
            return web.json_response({"ok": False, "error": "invalid_auth"})
        return web.json_response({"ok": True, "url": self.url.replace("http", "ws") + "/socket"})

    async def _response_url(self, request: web.Request) -> web.Response:
        url = f"{self.url}{request.path}"
        known = self._urls.get(url)
        if known is None:
            return web.Response(status=404, text="invalid_url")
        if time.time() - known.created > RESPONSE_URL_TTL:
            await self._changed_now("response_url", 404)
            return web.Response(status=404, text="expired_url")
        if known.uses >= RESPONSE_URL_USES:
            await self._changed_now("response_url", 404)
            return web.Response(status=404, text="used_url")
        if seconds := _limited(self._url_limits.get(url)):
            await self._changed_now("response_url", 429)
            return web.Response(
                status=429, text="rate_limited", headers={"Retry-After": f"{seconds:g}"}
            )
        known.uses += 1
        self.responses.append(Responded(url, await request.json(), time.time()))
        await self._changed_now("response_url", 200)
        return web.Response(text="ok")

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()  # answers the client's pings itself
        await ws.prepare(request)
        self._socket = ws
        await ws.send_json(
            {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}}
        )
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.socket_acks.append(json.loads(msg.data))
                await self._changed_now("socket ack", 200)
        return ws


def _limited(limits: list[_Limit] | None) -> float:
    """The Retry-After to answer this request with, or 0 to accept it."""
    if not limits:
        return 0.0
    if limits[0].after > 0:
        limits[0].after -= 1
        return 0.0
    return limits.pop(0).seconds


# -- Slack calling the adapter ------------------------------------------------------------------


def signed_headers(body: str, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict:
    """The headers Slack signs a request with."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def command_payload(
    text: str,
    response_url: str,
    *,
    user: str = "U1",
    channel: str = "C1",
    trigger_id: str | None = None,
    command: str = "/ask",
) -> dict[str, str]:
    """A slash command's fields, as Slack posts them."""
    return {
        "token": "deprecated-verification-token",
        "team_id": TEAM,
        "team_domain": "fake",
        "channel_id": channel,
        "channel_name": "general",
        "user_id": user,
        "user_name": f"name-{user}",
        "command": command,
        "text": text,
        "api_app_id": "A1",
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or f"{time.time_ns()}.{user}.trig",
    }


def mention_callback(
    text: str,
    *,
    event_id: str,
    user: str = "U1",
    channel: str = "C1",
    ts: str | None = None,
    thread_ts: str | None = None,
    kind: str = "app_mention",
) -> dict[str, Any]:
    """An event callback carrying an app_mention (or a `message`) event."""
    ts = ts or f"{time.time():.6f}"
    event: dict[str, Any] = {
        "type": kind,
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "team": TEAM,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return {
        "token": "deprecated-verification-token",
        "team_id": TEAM,
        "api_app_id": "A1",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
    }


@dataclass
class SlackCaller:
    """Posts to the adapter's events URL the way Slack does."""

    session: aiohttp.ClientSession
    url: str
    secret: str = SIGNING_SECRET

    async def post(
        self,
        body: str,
        content_type: str,
        *,
        secret: str | None = None,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        signed = signed_headers(body, secret or self.secret, timestamp)
        all_headers = {"Content-Type": content_type, **signed, **(headers or {})}
        async with self.session.post(self.url, data=body.encode(), headers=all_headers) as r:
            return r.status, await r.text()

    async def command(self, payload: dict[str, str], **kw: Any) -> tuple[int, str]:
        body = urllib.parse.urlencode(payload)
        return await self.post(body, "application/x-www-form-urlencoded", **kw)

    async def event(self, callback: dict[str, Any], retry: int = 0, **kw: Any) -> tuple[int, str]:
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        return await self.post(
            json.dumps(callback), "application/json", headers=headers if retry else None, **kw
        )


def echo(contexts: Sequence[Sequence[str]]) -> list[str]:
    """A responder that shows what it saw: the question and the turns of context."""
    return [f"echo {c[-1]} (turns {len(c)})" for c in contexts]


@dataclass
class SlackRig:
    """An adapter serving HTTP against a FakeSlack, with a caller and a worker."""

    fake: FakeSlack
    adapter: SlackAdapter
    caller: SlackCaller
    store: Store


@contextlib.asynccontextmanager
async def slack_rig(
    fake: FakeSlack, store: Store, respond: Respond | None = echo, **options: Any
) -> AsyncIterator[SlackRig]:
    """Run a SlackAdapter (HTTP mode unless `options` say otherwise) until the block ends;
    `respond` answers in an in-process worker (None: no worker)."""
    options = {"ingress": HttpMode(SIGNING_SECRET), **options}
    adapter = SlackAdapter(store, bot_token=fake.bot_token, api_url=fake.api_url, **options)
    runner = await serve(adapter.web_app(), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{runner.addresses[0][1]}{EVENTS_PATH}"
    stop = asyncio.Event()
    tasks = [asyncio.create_task(adapter.run(stop))]
    if respond is not None:
        tasks.append(asyncio.create_task(Worker(store, respond, idle_timeout=0.1).run(stop)))
    try:
        deadline = time.monotonic() + 5
        while adapter.ready_reason is not None:
            if tasks[0].done() or time.monotonic() > deadline:
                await tasks[0]  # raises what stopped it
                raise TimeoutError("the adapter did not become ready")
            await asyncio.sleep(0.01)
        async with aiohttp.ClientSession() as session:
            yield SlackRig(fake, adapter, SlackCaller(session, url), store)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()

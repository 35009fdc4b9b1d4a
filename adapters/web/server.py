"""The web group chat: one page, and a websocket per browser.

The websocket's URL names the person: `/r/ROOM/ws?name=NICK&client=TAB&after=SEQ` (plus
`token=` when the server has one). Frames are JSON text both ways:

- browser to server: `{"type": "say", "id": ID, "text": TEXT}` and `{"type": "ping"}`;
- server to browser: `welcome`, `history` (the kept messages after SEQ), `message` (anyone's,
  the bot's with a `quote` of the question), `ack` (your message ID got number SEQ),
  `thinking` (questions waiting), `presence`, `notice`, `error`, `pong`.

Every message a room shows is numbered (`seq`) and kept in the store's history, so a
browser that lost its connection asks for what came after the last number it saw, and a
message it sends again after reconnecting (same ID) is acknowledged, not posted twice.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from aiohttp import WSCloseCode, WSMsgType, web

from adapters.base import Adapter
from adapters.web.rooms import ROOM_NAME, Frame, Full, Member, Room, Rooms
from core import gate, telemetry
from core.errors import StoreUnavailable
from core.messages import Incoming, Reply
from core.queue.types import Enqueued, Store

STATIC = Path(__file__).resolve().parent / "static"
HISTORY_TTL = 30 * 86_400.0  # a room quiet for a month forgets its history
NAME_CHARS = 32
REMEMBERED = 10_000  # message ids remembered to acknowledge a re-sent message once
SMALL_FRAME = 256  # characters: a frame this short is parsed before the rate limit
CLOSE_BAD_REQUEST = 4400  # the browser must change something (its nickname) first
MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
ASK = re.compile(r"/ask(?:\s+|$)", re.IGNORECASE)
RESET = re.compile(r"/reset", re.IGNORECASE)
SECURITY_HEADERS = {
    # Only this server's own files run, and nothing is loaded from elsewhere; user text is
    # put in the page as text (textContent), so this is a second line of defence.
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the address may carry the room's token
    "Cache-Control": "no-cache",
}


async def _secure(_: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


class WebAdapter(Adapter):
    """Serves rooms at `/r/NAME`; the bot answers mentions of `bot_name` and `/ask`."""

    platform = "web"
    coalesce = False

    def __init__(
        self,
        store: Store,
        *,
        bot_name: str = "parley",
        max_chars: int = 1000,
        history: int = 100,
        max_rooms: int = 100,
        max_connections: int = 500,
        rate: int = 10,
        token: str | None = None,
    ) -> None:
        super().__init__(store, max_chars=max_chars)
        self.bot_name = bot_name
        self.history_size = history  # messages a room keeps
        self.rate = rate  # frames per connection per 10 s
        self.rooms = Rooms(max_rooms, max_connections)
        self._token = token.encode() if token else None
        self._mention = re.compile(rf"(?<![\w@])@{re.escape(bot_name)}(?!\w)[,:]?", re.IGNORECASE)
        self._how = f"mention @{bot_name} with a question, or start with /ask"
        self._posted: OrderedDict[tuple[str, str], int] = OrderedDict()  # (client, id): seq
        self._sockets: set[web.WebSocketResponse] = set()
        self._page = (STATIC / "index.html").read_bytes()
        self._max_frame = max(64 * 1024, max_chars * 8)

    # -- life cycle -------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """The page, its files and the websocket (the caller adds /healthz and /metrics)."""
        app = web.Application()
        app.router.add_get("/", self._root)
        app.router.add_get("/r/{room}", self._room_page)
        app.router.add_get("/r/{room}/ws", self._websocket)
        app.router.add_static("/static/", STATIC)
        app.on_response_prepare.append(_secure)
        return app

    async def start(self) -> None:
        return None  # the HTTP server is the caller's; it accepts connections already

    async def stop(self) -> None:
        """Close every websocket; browsers reconnect to the next server and resume."""
        await asyncio.gather(
            *(
                ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping")
                for ws in list(self._sockets)
            ),
            return_exceptions=True,
        )

    # -- HTTP -------------------------------------------------------------------------------

    async def _root(self, request: web.Request) -> web.Response:
        query = f"?{request.query_string}" if request.query_string else ""
        raise web.HTTPFound(f"/r/lobby{query}")

    def _room_name(self, request: web.Request) -> str:
        name = request.match_info["room"]
        if not ROOM_NAME.fullmatch(name):
            if ROOM_NAME.fullmatch(name.lower()) and request.path == f"/r/{name}":
                query = f"?{request.query_string}" if request.query_string else ""
                raise web.HTTPFound(f"/r/{name.lower()}{query}")
            raise web.HTTPNotFound(text="a room name is 1 to 32 of a-z, 0-9, - and _\n")
        return name

    def _check_token(self, request: web.Request) -> None:
        if self._token is None:
            return
        given = request.query.get("token", "") or request.headers.get("X-Parley-Token", "")
        if not hmac.compare_digest(given.encode(), self._token):
            self.rejected("unauthorized")
            raise web.HTTPUnauthorized(
                text="this chat needs its access token: open the link you were given, "
                "with ?token=... at its end\n"
            )

    async def _room_page(self, request: web.Request) -> web.Response:
        self._room_name(request)
        self._check_token(request)
        return web.Response(body=self._page, content_type="text/html", charset="utf-8")

    # -- websocket --------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        name = self._room_name(request)
        self._check_token(request)
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=self._max_frame, timeout=2)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await self._connection(ws, request, name)
        finally:
            self._sockets.discard(ws)
        return ws

    async def _connection(self, ws: web.WebSocketResponse, request: web.Request, name: str) -> None:
        nick = gate.name(request.query.get("name", ""), NAME_CHARS)
        if not nick or nick.casefold().lstrip("@") == self.bot_name.casefold():
            why = f"{nick} is the bot's name" if nick else "pick a nickname"
            await _refuse(ws, "bad_name", why, CLOSE_BAD_REQUEST)
            return
        client = request.query.get("client", "")
        if not CLIENT_ID.fullmatch(client):
            client = secrets.token_urlsafe(12)
        try:
            room = self.rooms.enter(name)
        except Full as exc:
            self.rejected("full")
            await _refuse(ws, "full", f"{exc}; try again later", WSCloseCode.TRY_AGAIN_LATER)
            return
        member = Member(ws, client, nick, self.rate)
        member.start()
        try:
            try:
                await self._join(room, member, gate.number(request.query.get("after")))
            except StoreUnavailable:
                await self._unavailable(ws)
                return
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    async with self.guard(f"a frame in {room.chat}"):
                        try:
                            await self._frame(room, member, message.data)
                        except StoreUnavailable:
                            # The browser reconnects and sends again what was not acked.
                            await self._unavailable(ws)
                            return
                elif message.type == WSMsgType.BINARY:
                    self._refused(member, "bad_frame", "frames are JSON text")
        finally:
            self.rooms.leave(room, member)
            room.broadcast(room.presence())
            await member.finish()

    async def _unavailable(self, ws: web.WebSocketResponse) -> None:
        self.rejected("store_unreachable")  # the browser retries in a moment
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"store unreachable")

    async def _join(self, room: Room, member: Member, after: int) -> None:
        """Send the history after `after`, then add the member to the room: under the room's
        lock, so no message falls between the two or comes twice."""
        async with room.lock:
            history = await self.store.history(room.chat)
            # A number beyond the room's latest is from before the history was forgotten:
            # the browser starts over with what there is now.
            restart = after > history.last
            messages = [
                {"type": "message", "seq": seq, **json.loads(entry)}
                for seq, entry in history.entries
                if restart or seq > after
            ]
            member.push(
                {
                    "type": "welcome",
                    "room": room.name,
                    "bot": self.bot_name,
                    "name": member.name,
                    "client": member.client,
                    "max_chars": self.max_chars,
                }
            )
            member.push(
                {"type": "history", "messages": messages, "last": history.last, "restart": restart}
            )
            member.last_seq = history.last
            room.members.add(member)
            member.push({"type": "thinking", "count": await self.store.backlog(room.chat)})
            room.broadcast(room.presence())

    async def _frame(self, room: Room, member: Member, data: str) -> None:
        # Pings (the page sends one every 25 s) do not count against the rate limit; every
        # other frame is counted before it is parsed, so a flood of large or deeply nested
        # frames costs a comparison each, not a parse.
        frame = _parse(data) if len(data) <= SMALL_FRAME else None
        if isinstance(frame, dict) and frame.get("type") == "ping":
            member.push({"type": "pong"})
            return
        if not member.allow():
            # Counted, not logged: a flood of frames would otherwise flood the log.
            telemetry.REJECTED.labels(self.platform, "rate_limited").inc()
            say_id = frame.get("id") if isinstance(frame, dict) else None
            member.push(
                _error(
                    "rate_limited",
                    f"slow down: at most {self.rate} messages in 10 seconds; "
                    "that one was not posted",
                    say_id,
                )
            )
            return
        if frame is None and len(data) > SMALL_FRAME:
            frame = _parse(data)
        if not isinstance(frame, dict):
            msg = f"frames must be JSON objects, nested at most {gate.MAX_DEPTH} deep"
            self._refused(member, "bad_frame", msg)
        elif frame.get("type") == "say":
            await self._say(room, member, frame)
        else:
            self._refused(member, "bad_frame", 'unknown frame type; expected "say" or "ping"')

    async def _say(self, room: Room, member: Member, frame: Frame) -> None:
        self.received()
        msg_id, text = frame.get("id"), frame.get("text")
        if not isinstance(msg_id, str) or not MESSAGE_ID.fullmatch(msg_id):
            msg = 'a "say" frame needs an "id" of 1 to 64 letters, digits, - or _'
            self._refused(member, "bad_frame", msg)
            return
        if not isinstance(text, str):
            self._refused(member, "bad_frame", 'a "say" frame needs a "text"', msg_id)
            return
        key = (member.client, msg_id)
        if key in self._posted:  # sent again after a reconnect: it is in the room already
            member.push({"type": "ack", "id": msg_id, "seq": self._posted[key]})
            return
        text = gate.text(text)
        if not text:
            self._refused(member, "empty", "the message is empty", msg_id)
            return
        if len(text) > self.max_chars:
            text = text[: self.max_chars]
            cut = f"your message was long; it was cut to {self.max_chars:,} characters"
            member.push({"type": "notice", "id": msg_id, "message": cut})
        entry = {"kind": "user", "id": msg_id, "name": member.name, "text": text}
        seq = await self._publish(room, entry)
        self._remember(key, seq)
        member.push({"type": "ack", "id": msg_id, "seq": seq})
        await self._answer(room, member, msg_id, seq, text)

    async def _answer(self, room: Room, member: Member, msg_id: str, seq: int, text: str) -> None:
        """Queue the message for the bot if it asks something of it."""
        if RESET.fullmatch(text):
            await self.reset(self._incoming(room, member, msg_id, seq, text))
            return
        if ask := ASK.match(text):
            question = text[ask.end() :]
        elif self._mention.search(text):
            question = " ".join(self._mention.sub(" ", text).split())
        else:
            self.ignored("chatter")
            return
        result = await self.ask(self._incoming(room, member, msg_id, seq, question), self._how)
        if result is Enqueued.QUEUED:
            async with room.lock:
                count = await self.store.backlog(room.chat)
                room.broadcast({"type": "thinking", "count": count})
        elif result is Enqueued.RATE_LIMITED:
            msg = "you asked many questions in a short time; the bot skips that one"
            member.push(_error("asking_too_fast", msg, msg_id))

    def _incoming(self, room: Room, member: Member, msg_id: str, seq: int, text: str) -> Incoming:
        return Incoming(
            room.chat,
            member.client,
            text,
            f"{member.client}:{msg_id}",
            sender_name=member.name,
            reply_to=str(seq),  # the reply quotes message number `seq`
        )

    async def _publish(self, room: Room, entry: Frame) -> int:
        """Number `entry`, keep it in the room's history and show it to the room."""
        entry = {**entry, "at": round(time.time(), 3)}
        async with room.lock:
            seq = await self.store.append_history(
                room.chat, json.dumps(entry, ensure_ascii=False), self.history_size, HISTORY_TTL
            )
            room.broadcast({"type": "message", "seq": seq, **entry})
        return seq

    def _remember(self, key: tuple[str, str], seq: int) -> None:
        self._posted[key] = seq
        if len(self._posted) > REMEMBERED:
            self._posted.popitem(last=False)

    def _refused(self, member: Member, code: str, message: str, msg_id: str | None = None) -> None:
        telemetry.REJECTED.labels(self.platform, code).inc()
        member.push(_error(code, message, msg_id))

    # -- egress -------------------------------------------------------------------------------

    async def send(self, replies: Sequence[Reply]) -> None:
        """Post the bot's reply in its room, quoting the question, for everyone there now
        and in the history for whoever comes later."""
        for reply in replies:
            # A reply posted whose acknowledgement to the outbox failed comes again: once.
            # ("reply" is shorter than any client id, so the keys cannot collide.)
            key = ("reply", reply.in_reply_to)
            if key in self._posted:
                continue
            entry: Frame = {
                "kind": "bot",
                "name": self.bot_name,
                "text": reply.text,
                "quote": {
                    "name": reply.asker_name,
                    "text": reply.question,
                    "seq": gate.number(reply.reply_to),
                },
            }
            if reply.note:
                entry["note"] = reply.note
            with self.rooms.hold(reply.chat.chat) as room:
                seq = await self._publish(room, entry)
                if room.members:
                    async with room.lock:
                        count = await self.store.backlog(room.chat)
                        room.broadcast({"type": "thinking", "count": count})
            self._remember(key, seq)


def _parse(data: str) -> object:
    """A frame's JSON, or None when it is not JSON (or nested too deep)."""
    try:
        return gate.loads(data)
    except gate.Refused:
        return None


def _error(code: str, message: str, msg_id: object = None) -> Frame:
    frame: Frame = {"type": "error", "code": code, "message": message}
    if isinstance(msg_id, str):
        frame["id"] = msg_id
    return frame


async def _refuse(ws: web.WebSocketResponse, code: str, message: str, close: int) -> None:
    """Tell the browser why, then close: it shows the reason instead of retrying blindly."""
    await ws.send_str(json.dumps(_error(code, message)))
    await ws.close(code=close, message=code.encode())

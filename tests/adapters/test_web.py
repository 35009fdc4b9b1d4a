"""The web group chat through aiohttp's test client: real websockets, the real queue and
Sender, and a worker whose responder echoes the question with the size of its context."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from adapters.base import RESET_TEXT
from adapters.ops import add_ops_routes
from adapters.web import WebAdapter
from core.messages import ChatKey
from core.queue.memory_store import MemoryStore
from core.queue.types import Store
from core.queue.worker import Worker

LOBBY = ChatKey("web", "lobby")


def echo(contexts: Sequence[Sequence[str]]) -> list[str]:
    return [f"re: {c[-1]} ({len(c)} turns)" for c in contexts]


class Browser:
    """One websocket, as the page uses it; keeps every frame it received."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._taken: set[int] = set()
        self._ids = 0

    async def until(self, done: Callable[[], bool], timeout: float = 10) -> None:
        """Receive frames until `done()`."""
        async with asyncio.timeout(timeout):
            while not done():
                message = await self.ws.receive()
                if message.type != WSMsgType.TEXT:
                    raise AssertionError(f"socket closed ({message.type}, {message.data})")
                self.frames.append(json.loads(message.data))

    async def expect(self, type_: str, /, timeout: float = 10, **fields: object) -> dict[str, Any]:
        """The first frame of type `type_` (with `fields`) not returned before."""
        found: list[dict[str, Any]] = []

        def take() -> bool:
            for i, frame in enumerate(self.frames):
                if i in self._taken or frame["type"] != type_:
                    continue
                if all(frame.get(k) == v for k, v in fields.items()):
                    self._taken.add(i)
                    found.append(frame)
                    return True
            return False

        await self.until(take, timeout)
        return found[0]

    async def say(self, text: str, msg_id: str | None = None) -> int:
        """Post `text`; returns its number."""
        if msg_id is None:
            self._ids += 1
            msg_id = f"m{self._ids}"
        await self.ws.send_json({"type": "say", "id": msg_id, "text": text})
        return int((await self.expect("ack", id=msg_id))["seq"])

    async def bot_reply(self, timeout: float = 10) -> dict[str, Any]:
        return await self.expect("message", timeout, kind="bot")

    def messages(self) -> list[dict[str, Any]]:
        """The messages shown so far: the history's, then those that came live."""
        shown = []
        for frame in self.frames:
            if frame["type"] == "history":
                shown.extend(frame["messages"])
            elif frame["type"] == "message":
                shown.append(frame)
        return shown


class Room:
    """A served WebAdapter with its Sender and a worker running."""

    def __init__(self, client: TestClient, adapter: WebAdapter) -> None:
        self.client = client
        self.adapter = adapter
        self.store = adapter.store

    async def join(
        self, name: str, room: str = "lobby", after: int = 0, client: str = "", **query: str
    ) -> Browser:
        params = {"name": name, "after": str(after), "client": client or f"tab-of-{name}"}
        ws = await self.client.ws_connect(f"/r/{room}/ws", params={**params, **query})
        browser = Browser(ws)
        await browser.expect("welcome")
        await browser.expect("history")
        return browser

    async def refused(
        self, name: str, room: str = "lobby", **query: str
    ) -> tuple[dict[str, Any], int]:
        """The error frame and close code of a connection the server turns away."""
        params = {"name": name, "client": "tab-refused", **query}
        ws = await self.client.ws_connect(f"/r/{room}/ws", params=params)
        error = json.loads((await ws.receive(timeout=5)).data)
        closing = await ws.receive(timeout=5)
        assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
        return error, ws.close_code or 0


MakeRoom = Callable[..., Awaitable[Room]]


@pytest.fixture(params=["memory"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "redis":
        return request.getfixturevalue("redis_store")  # type: ignore[no-any-return]
    return MemoryStore()


@pytest.fixture
async def make_room(store: Store) -> AsyncIterator[MakeRoom]:
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    clients: list[TestClient] = []

    async def make(respond: Callable[..., list[str]] = echo, **options: Any) -> Room:
        adapter = WebAdapter(store, **options)
        app = adapter.make_app()
        add_ops_routes(app, adapter.health, store, "web")
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        worker = Worker(store, respond, idle_timeout=0.05)
        tasks.append(asyncio.create_task(adapter.run(stop)))
        tasks.append(asyncio.create_task(worker.run(stop)))
        return Room(client, adapter)

    yield make
    stop.set()
    await asyncio.gather(*tasks)
    for client in clients:
        await client.close()


async def test_the_page_and_its_files_are_served_with_a_content_security_policy(
    make_room: MakeRoom,
) -> None:
    room = await make_room()
    page = await room.client.get("/r/lobby")
    assert page.status == 200 and page.content_type == "text/html"
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert '<script src="/static/app.js"' in await page.text()
    for path in ("/static/app.js", "/static/style.css", "/static/favicon.svg"):
        assert (await room.client.get(path)).status == 200, path
    home = await room.client.get("/", allow_redirects=False)
    assert home.status == 302 and home.headers["Location"] == "/r/lobby"
    upper = await room.client.get("/r/Tea-Room", allow_redirects=False)
    assert upper.headers["Location"] == "/r/tea-room"
    assert (await room.client.get("/r/no%20spaces")).status == 404
    assert (await room.client.get("/static/../server.py")).status in (403, 404)
    health = await room.client.get("/healthz")
    assert health.status == 200 and (await health.json())["status"] == "ready"
    metrics = await (await room.client.get("/metrics")).text()
    assert 'parley_queue_chats{platform="web",queue="outbox"}' in metrics


async def test_two_people_talk_and_the_bot_answers_only_when_asked(make_room: MakeRoom) -> None:
    room = await make_room()
    ann, bob = await room.join("ann"), await room.join("bob")
    assert (await bob.expect("presence", names=["ann", "bob"]))["names"] == ["ann", "bob"]
    chatter = [
        "hi bob <script>alert(1)</script>",
        "mail me at ann@parley.org",
        "@parleyfan are you there?",
        "parley is a nice name",
        "/asking around",
    ]
    for text in chatter:
        seq = await ann.say(text)
        seen = await bob.expect("message", seq=seq)
        assert seen["text"] == text and seen["name"] == "ann" and seen["kind"] == "user"
        assert seen["at"] > 0
    await ann.say("@parley are you there?")
    reply = await bob.bot_reply()
    assert reply["text"] == "re: are you there? (1 turns)"  # the first question it was asked
    assert [m["kind"] for m in bob.messages()] == ["user"] * 6 + ["bot"]


async def test_questions_are_answered_in_order_quoting_them_with_a_thinking_indicator(
    make_room: MakeRoom,
) -> None:
    room = await make_room()
    ann, bob = await room.join("ann"), await room.join("bob")
    asked = {
        await ann.say("@parley first"): "first",
        await ann.say("/ask second"): "second",
        await bob.say("hey @Parley, third?"): "hey third?",
    }
    replies = [await bob.bot_reply() for _ in asked]
    assert [r["quote"]["seq"] for r in replies] == sorted(asked)
    assert [r["quote"]["text"] for r in replies] == list(asked.values())
    assert [r["quote"]["name"] for r in replies] == ["ann", "ann", "bob"]
    assert [r["name"] for r in replies] == ["parley"] * 3
    assert replies[2]["text"] == "re: hey third? (5 turns)"  # the room's context, in order
    first_reply = bob.frames.index(replies[0])
    assert any(f["type"] == "thinking" and f["count"] for f in bob.frames[:first_reply])
    await bob.until(lambda: [f for f in bob.frames if f["type"] == "thinking"][-1]["count"] == 0)
    assert [m["seq"] for m in bob.messages()] == sorted(m["seq"] for m in bob.messages())
    await ann.until(lambda: len(ann.messages()) == 6)
    assert [m["text"] for m in ann.messages()] == [m["text"] for m in bob.messages()]


@pytest.mark.parametrize("store", ["memory", "redis"], indirect=True)
async def test_history_on_join_and_after_a_reconnect(make_room: MakeRoom) -> None:
    room = await make_room(history=3)
    ann = await room.join("ann")
    seqs = [await ann.say(f"message {n}") for n in range(4)]
    await ann.say("@parley hello")
    await ann.bot_reply()
    carl = await room.join("carl")
    assert [m["text"] for m in carl.messages()] == [
        "message 3",
        "@parley hello",
        "re: hello (1 turns)",
    ]
    history = carl.frames[1]
    assert history["last"] == seqs[-1] + 2 and not history["restart"]
    again = await room.join("carl", after=seqs[-1] + 1)
    assert [m["text"] for m in again.messages()] == ["re: hello (1 turns)"]
    stale = await room.join("carl", after=99)  # numbers from before the history expired
    assert stale.frames[1]["restart"] and len(stale.messages()) == 3
    await ann.say("after")
    assert (await again.expect("message"))["text"] == "after"


async def test_a_message_sent_again_after_a_reconnect_is_posted_once(make_room: MakeRoom) -> None:
    room = await make_room()
    ann = await room.join("ann", client="tab-12345")
    first = await ann.say("@parley only once", msg_id="abc")
    await ann.ws.close()
    ann = await room.join("ann", client="tab-12345", after=first)
    assert await ann.say("@parley only once", msg_id="abc") == first
    await ann.until(lambda: any(m["kind"] == "bot" for m in ann.messages()))  # live or history
    bob = await room.join("bob")
    assert [m["text"] for m in bob.messages()] == ["@parley only once", "re: only once (1 turns)"]
    # The same id from another tab is another message.
    assert await bob.say("hi", msg_id="abc") > first


async def test_reset_forgets_the_rooms_context(make_room: MakeRoom) -> None:
    room = await make_room()
    ann = await room.join("ann")
    await ann.say("@parley one")
    assert (await ann.bot_reply())["text"] == "re: one (1 turns)"
    await ann.say("@parley two")
    assert (await ann.bot_reply())["text"] == "re: two (3 turns)"
    reset = await ann.say("/reset")
    done = await ann.bot_reply()
    assert done["text"] == RESET_TEXT and done["quote"] == {
        "name": "ann",
        "text": "/reset",
        "seq": reset,
    }
    assert await room.store.context(LOBBY) == []
    await ann.say("/ask three")
    assert (await ann.bot_reply())["text"] == "re: three (1 turns)"
    await ann.say("/ask")
    assert "mention @parley" in (await ann.bot_reply())["text"]


async def test_long_messages_are_cut_and_hidden_characters_removed(make_room: MakeRoom) -> None:
    room = await make_room(max_chars=20)
    ann = await room.join("ann")
    seq = await ann.say("x" * 50)
    assert "cut to 20 characters" in (await ann.expect("notice"))["message"]
    assert (await ann.expect("message", seq=seq))["text"] == "x" * 20
    seq = await ann.say("  a\x00b\u202ec\r\nd  ")
    assert (await ann.expect("message", seq=seq))["text"] == "abc\nd"
    await ann.ws.send_json({"type": "say", "id": "blank", "text": " \t\n "})
    assert (await ann.expect("error", id="blank"))["code"] == "empty"


async def test_each_connection_is_rate_limited(make_room: MakeRoom) -> None:
    room = await make_room(rate=3)
    ann = await room.join("ann")
    for n in range(3):
        await ann.say(f"fast {n}")
    await ann.ws.send_json({"type": "say", "id": "fourth", "text": "too fast"})
    assert (await ann.expect("error", id="fourth"))["code"] == "rate_limited"
    await ann.ws.send_json({"type": "ping"})  # keep-alives are not counted
    await ann.expect("pong")
    bob = await room.join("bob")
    assert [m["text"] for m in bob.messages()] == ["fast 0", "fast 1", "fast 2"]
    await bob.say("bob has his own allowance")


async def test_rooms_and_connections_are_capped(make_room: MakeRoom) -> None:
    room = await make_room(max_rooms=1, max_connections=2)
    ann = await room.join("ann")
    error, code = await room.refused("bob", room="other")
    assert error["code"] == "full" and "rooms" in error["message"] and code == 1013
    await room.join("bob")
    error, code = await room.refused("carl")
    assert error["code"] == "full" and "connections" in error["message"] and code == 1013
    await ann.ws.close()
    async with asyncio.timeout(5):  # the server counts ann's connection out
        while room.adapter.rooms.connections > 1:
            await asyncio.sleep(0.01)
    await room.join("carl", room="lobby")  # welcomed now that there is room


async def test_malformed_frames_get_an_error_and_the_connection_stays(make_room: MakeRoom) -> None:
    room = await make_room(rate=20)
    ann = await room.join("ann")
    bad: list[str | bytes] = [
        "not json",
        "[1, 2]",
        '{"type": "dance"}',
        '{"type": "say", "text": "no id"}',
        '{"type": "say", "id": "has spaces", "text": "x"}',
        '{"type": "say", "id": "n1", "text": 42}',
        b"\x00\x01",
    ]
    for frame in bad:
        if isinstance(frame, bytes):
            await ann.ws.send_bytes(frame)
        else:
            await ann.ws.send_str(frame)
        assert (await ann.expect("error"))["code"] == "bad_frame", frame
    assert await ann.say("still here") > 0


async def test_nicknames_are_stripped_capped_and_not_the_bots(make_room: MakeRoom) -> None:
    room = await make_room(bot_name="Robo")
    for name in ("   ", "robo", "@ROBO"):
        error, code = await room.refused(name)
        assert error["code"] == "bad_name" and code == 4400, name
    ws = await room.client.ws_connect("/r/lobby/ws", params={"name": "  ann\u202e " + "n" * 40})
    welcome = json.loads((await ws.receive(timeout=5)).data)
    assert welcome["name"] == "ann " + "n" * 28 and welcome["bot"] == "Robo"
    await ws.close()


async def test_a_room_with_a_token_is_closed_to_others(make_room: MakeRoom) -> None:
    room = await make_room(token="s3cret-t0ken")
    assert (await room.client.get("/r/lobby")).status == 401
    assert (await room.client.get("/r/lobby?token=wrong")).status == 401
    assert (await room.client.get("/r/lobby?token=s3cret-t0ken")).status == 200
    header = await room.client.get("/r/lobby", headers={"X-Parley-Token": "s3cret-t0ken"})
    assert header.status == 200
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await room.join("eve")
    assert refused.value.status == 401
    ann = await room.join("ann", token="s3cret-t0ken")
    await ann.say("inside")


async def test_stopping_closes_the_sockets_so_browsers_reconnect(store: Store) -> None:
    adapter = WebAdapter(store)
    client = TestClient(TestServer(adapter.make_app()))
    await client.start_server()
    stop = asyncio.Event()
    running = asyncio.create_task(adapter.run(stop))
    ws = await client.ws_connect("/r/lobby/ws", params={"name": "ann"})
    stop.set()
    await running
    while (message := await ws.receive(timeout=5)).type == WSMsgType.TEXT:
        pass
    assert message.type == WSMsgType.CLOSE and message.data == 1001
    await client.close()


# -- hostile input -----------------------------------------------------------------------------
# JSON's \\ud800 escape is plain ASCII on the wire and a lone UTF-16 surrogate once decoded:
# text that UTF-8 cannot encode, if it got past the gate.
SURROGATE_FRAME = '{"type": "say", "id": "%s", "text": "%s \\ud800"}'


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_a_lone_surrogate_in_a_question_is_answered_and_the_bot_goes_on(
    make_room: MakeRoom, caplog: pytest.LogCaptureFixture
) -> None:
    room = await make_room()
    ann = await room.join("ann")
    await ann.ws.send_str(SURROGATE_FRAME % ("a1", "@parley hi"))
    reply = await ann.bot_reply()
    assert reply["quote"]["text"] == "hi \ufffd" and reply["text"] == "re: hi \ufffd (1 turns)"
    await ann.ws.send_str('{"type": "say", "id": "a2", "text": "/ask \\udfff"}')
    assert (await ann.bot_reply())["quote"]["text"] == "\ufffd"
    await ann.say("@parley still there?")
    assert (await ann.bot_reply())["quote"]["text"] == "still there?"
    assert errors_logged(caplog) == []


async def test_a_lone_surrogate_in_chatter_does_not_silence_the_room(make_room: MakeRoom) -> None:
    room = await make_room()
    ann, bob = await room.join("ann"), await room.join("bob")
    await ann.ws.send_str(SURROGATE_FRAME % ("c1", "hello"))
    assert (await bob.expect("message", kind="user"))["text"] == "hello \ufffd"
    await ann.say("and after")
    assert (await bob.expect("message", kind="user"))["text"] == "and after"
    carl = await room.join("carl")
    assert [m["text"] for m in carl.messages()] == ["hello \ufffd", "and after"]


async def test_a_frame_that_cannot_be_sent_is_skipped_not_the_ones_after_it(
    make_room: MakeRoom,
) -> None:
    room = await make_room()
    ann, bob = await room.join("ann"), await room.join("bob")
    lobby = room.adapter.rooms.get("lobby")
    assert lobby is not None
    lobby.broadcast({"type": "notice", "message": "\ud800"})  # past the gate only by a bug
    await bob.say("next")
    assert (await ann.expect("message", kind="user"))["text"] == "next"
    assert [f for f in ann.frames if f["type"] == "notice"] == []  # it was skipped


async def test_a_resume_number_that_is_not_ascii_digits_starts_from_the_beginning(
    make_room: MakeRoom,
) -> None:
    room = await make_room()
    ann = await room.join("ann")
    await ann.say("first")
    for after in ("\u00b2", "\u0663", "1" * 40, "-3"):  # ², Arabic-Indic three, ...
        bob = await room.join("bob", after=after)  # type: ignore[arg-type]
        assert bob.messages()[0]["text"] == "first", after
        await bob.say(f"bob after {after!r}")
        await bob.ws.close()


async def test_deeply_nested_frames_are_refused_after_the_rate_limit(
    make_room: MakeRoom, caplog: pytest.LogCaptureFixture
) -> None:
    room = await make_room(rate=3)
    ann = await room.join("ann")
    await ann.ws.send_str("[" * 60_000)
    assert "nested" in (await ann.expect("error", code="bad_frame"))["message"]
    await ann.ws.send_str('{"a": ' * 40 + "1" + "}" * 40)
    await ann.expect("error", code="bad_frame")
    await ann.say("still here")
    await ann.ws.send_str("[" * 60_000)  # the fourth frame in 10 s: not even parsed
    await ann.expect("error", code="rate_limited")
    await ann.ws.send_json({"type": "ping"})
    await ann.expect("pong")
    assert errors_logged(caplog) == []


def test_importing_the_web_chat_does_not_import_tensorflow() -> None:
    code = "import sys, adapters.web, bots.web; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


async def test_the_chat_waits_out_a_redis_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.queue.redis_store import RedisStore
    from support.redis_server import RedisServer

    server = RedisServer(tmp_path / "r", appendonly=True).start()
    store = RedisStore.from_url(server.url)
    adapter = WebAdapter(store)
    client = TestClient(TestServer(adapter.make_app()))
    await client.start_server()
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(adapter.run(stop)),
        asyncio.create_task(Worker(store, echo, idle_timeout=0.05).run(stop)),
    ]
    room = Room(client, adapter)
    try:
        ann = await room.join("ann")
        await ann.say("@parley before?")
        assert (await ann.bot_reply())["text"] == "re: before? (1 turns)"
        server.stop()
        await asyncio.sleep(1.5)
        assert not any(t.done() for t in tasks)  # waiting, not dead
        server.start()
        async with asyncio.timeout(15):
            while True:  # the page reconnects until the store answers again
                try:
                    bob = await room.join("bob")
                    break
                except AssertionError:
                    await asyncio.sleep(0.2)
        await bob.say("@parley after?")
        assert (await bob.bot_reply(timeout=15))["text"] == "re: after? (3 turns)"
        assert not any(t.done() for t in tasks)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
        await store.close()
        server.stop()

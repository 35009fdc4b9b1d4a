"""The rooms of the web chat in this process: who is connected where, and the frames each
browser is sent, in order.

Everything a room's members see (people's messages, the bot's replies, the thinking
indicator) is numbered and broadcast under the room's lock, so every member receives a
room's messages in sequence order; a member that joins reads the history and is added to
the room under the same lock, so nothing falls between its history and its live frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from aiohttp import WSCloseCode, web

from core.messages import ChatKey

log = logging.getLogger("parley.web")

ROOM_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
RATE_WINDOW = 10.0  # seconds over which a connection's frames are counted
SEND_QUEUE = 256  # frames waiting for a slow browser before it is disconnected

Frame = dict[str, Any]


class Full(Exception):
    """No room for one more connection or one more room; try again later."""


class Member:
    """One browser connection: its person, its rate limit and its outgoing frames, which a
    single task writes (websocket writes must not interleave)."""

    def __init__(self, ws: web.WebSocketResponse, client: str, name: str, rate: int) -> None:
        self.ws = ws
        self.client = client  # the browser tab's id: the asker as the queue sees it
        self.name = name
        self.rate = rate
        self.last_seq = 0  # the latest message this browser was given
        self._frames: asyncio.Queue[Frame] = asyncio.Queue(SEND_QUEUE)
        self._recent: deque[float] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[Any] | None = None

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write())

    async def finish(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    def push(self, frame: Frame) -> None:
        """Queue `frame` for this browser. Messages it already has (by seq) are skipped. A
        browser that cannot keep up is disconnected: it reconnects and resumes from its last
        message, which costs less than an unbounded queue."""
        if frame["type"] == "message":
            if frame["seq"] <= self.last_seq:
                return
            self.last_seq = frame["seq"]
        if self._closing is not None:
            return
        try:
            self._frames.put_nowait(frame)
        except asyncio.QueueFull:
            log.info("a browser fell %d frames behind; disconnecting it", SEND_QUEUE)
            if self._writer is not None:
                self._writer.cancel()
            self._closing = asyncio.create_task(
                self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow")
            )

    def allow(self) -> bool:
        """Count one frame against the rate limit; False when over it."""
        now = time.monotonic()
        while self._recent and self._recent[0] <= now - RATE_WINDOW:
            self._recent.popleft()
        if len(self._recent) >= self.rate:
            return False
        self._recent.append(now)
        return True

    async def _write(self) -> None:
        while True:
            frame = await self._frames.get()
            try:
                await self.ws.send_str(json.dumps(frame, ensure_ascii=False))
            except (ConnectionError, RuntimeError):
                return  # the browser is gone; the reader side sees it and cleans up
            except (TypeError, ValueError) as exc:  # encoding fails before anything is sent
                # Text passes the gate before it reaches a room, so this is a bug; but one
                # frame that cannot be sent must not silence everything after it.
                log.error("a %s frame could not be sent: %r", frame.get("type"), exc)


class Room:
    """One room's members and the lock that orders what they are sent."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.chat = ChatKey("web", name)
        self.members: set[Member] = set()
        self.lock = asyncio.Lock()
        self.holds = 0  # connections, and replies being sent, that use this room

    def broadcast(self, frame: Frame) -> None:
        for member in list(self.members):
            member.push(frame)

    def presence(self) -> Frame:
        return {"type": "presence", "names": sorted({m.name for m in self.members})}


class Rooms:
    """The rooms with someone in them (or a reply on its way), within the caps."""

    def __init__(self, max_rooms: int, max_connections: int) -> None:
        self.max_rooms = max_rooms
        self.max_connections = max_connections
        self.connections = 0
        self._rooms: dict[str, Room] = {}

    def __len__(self) -> int:
        return len(self._rooms)

    def get(self, name: str) -> Room | None:
        return self._rooms.get(name)

    def enter(self, name: str) -> Room:
        """A new connection's room; raises `Full` beyond the caps."""
        if self.connections >= self.max_connections:
            raise Full(f"the server has its maximum of {self.max_connections} connections")
        room = self._rooms.get(name)
        if room is None:
            if len(self) >= self.max_rooms:
                raise Full(f"the server has its maximum of {self.max_rooms} open rooms")
            room = self._rooms[name] = Room(name)
        room.holds += 1
        self.connections += 1
        return room

    def leave(self, room: Room, member: Member | None) -> None:
        if member is not None:
            room.members.discard(member)
        self.connections -= 1
        self._release(room)

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[Room]:
        """The room, for a reply: kept while in use whether or not anyone is in it (replies
        are not refused by the room cap: their question came from a room that had room)."""
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = Room(name)
        room.holds += 1
        try:
            yield room
        finally:
            self._release(room)

    def _release(self, room: Room) -> None:
        room.holds -= 1
        if not room.holds and self._rooms.get(room.name) is room:
            del self._rooms[room.name]

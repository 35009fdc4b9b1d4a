"""Messages as every platform and the queue see them: frozen, JSON-serialisable."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from enum import StrEnum
from typing import Any

from core import gate


def _dumps(message: Incoming | Reply) -> str:
    # dataclasses.asdict deep-copies every field; this is the queue's hot path.
    fields = {f.name: getattr(message, f.name) for f in dataclass_fields(message)}
    fields["chat"] = {"platform": message.chat.platform, "chat": message.chat.chat}
    # Text passes the gate on its way in; a message made elsewhere must still be storable
    # (a lone surrogate can only stand inside a JSON string, so replacing it keeps the JSON).
    return gate.encodable(json.dumps(fields, ensure_ascii=False, separators=(",", ":")))


def _loads(data: str | bytes) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(data)
    raw["chat"] = ChatKey(**raw["chat"])
    return raw


@dataclass(frozen=True, slots=True)
class ChatKey:
    """One conversation place: a Telegram group, a Slack channel, a web room.

    Messages of one chat are answered one at a time, in arrival order.
    """

    platform: str
    chat: str

    def __str__(self) -> str:
        return f"{self.platform}:{self.chat}"

    @classmethod
    def parse(cls, text: str) -> ChatKey:
        platform, sep, chat = text.partition(":")
        if not sep or not platform or not chat:
            raise ValueError(f"not a chat key: {text!r}")
        return cls(platform, chat)


class EventKind(StrEnum):
    """What a chat event asks of the bot. Every kind waits its turn in the chat's queue,
    so a /reset sent after three questions is acted on after their answers."""

    QUESTION = "question"  # answered by the model
    RESET = "reset"  # forget the thread's context, then say so
    HELP = "help"  # answered with the adapter's own text (`Incoming.answer`)


class ReplyKind(StrEnum):
    ANSWER = "answer"
    BUSY = "busy"  # the chat's backlog is full
    FAILED = "failed"  # the responder failed on this message every time
    RESET = "reset"  # the confirmation that the context was forgotten
    HELP = "help"  # how to talk to the bot (Slack shows it to the asker alone)
    SLOW_DOWN = "slow_down"  # the asker sends too fast; their questions are skipped a while


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message someone addressed to the bot: a question, or a command (`kind`).

    `message_id` is the platform's own id (Telegram update id, Slack event id, ...): the
    queue drops a second message with the same id in the same chat. `reply_to` is what the
    platform needs to answer it (a message id to quote, a response_url).
    """

    chat: ChatKey
    sender: str
    text: str
    message_id: str
    thread: str = ""
    sender_name: str = ""
    reply_to: str = ""
    received_at: float = field(default_factory=time.time)
    note: str = ""  # told to the asker with the reply (e.g. that the text was cut short)
    kind: EventKind = EventKind.QUESTION
    answer: str = ""  # the reply to a RESET or HELP event, in the platform's words

    def to_json(self) -> str:
        return _dumps(self)

    @classmethod
    def from_json(cls, data: str | bytes) -> Incoming:
        raw = _loads(data)
        raw["kind"] = EventKind(raw.get("kind", EventKind.QUESTION))
        return cls(**raw)


@dataclass(frozen=True, slots=True)
class Reply:
    """The bot's answer to one `Incoming`, addressed as the platform needs."""

    chat: ChatKey
    text: str
    in_reply_to: str  # the Incoming's message_id
    thread: str = ""
    asker: str = ""
    asker_name: str = ""
    question: str = ""
    reply_to: str = ""
    kind: ReplyKind = ReplyKind.ANSWER
    received_at: float = 0.0  # when the question arrived, for end-to-end latency
    created_at: float = field(default_factory=time.time)
    note: str = ""

    @classmethod
    def to(cls, message: Incoming, text: str, kind: ReplyKind = ReplyKind.ANSWER) -> Reply:
        return cls(
            message.chat,
            text,
            message.message_id,
            message.thread,
            message.sender,
            message.sender_name,
            message.text,
            message.reply_to,
            kind,
            message.received_at,
            note=message.note,
        )

    def to_json(self) -> str:
        return _dumps(self)

    @classmethod
    def from_json(cls, data: str | bytes) -> Reply:
        raw = _loads(data)
        raw["kind"] = ReplyKind(raw["kind"])
        return cls(**raw)

"""What every corpus loader produces."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Conversation:
    """One conversation: its id (stable across runs) and its turns in order.

    A turn is everything one speaker said before the other spoke.
    """

    id: str
    turns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Example:
    """A training example: the turns before a reply, and the reply."""

    context: tuple[str, ...]
    reply: str
    conversation_id: str


def examples_from(conversations: list[Conversation], context_turns: int) -> list[Example]:
    """Every reply of every conversation with up to `context_turns` turns before it."""
    out: list[Example] = []
    for conv in conversations:
        for i in range(1, len(conv.turns)):
            start = max(0, i - context_turns)
            out.append(Example(conv.turns[start:i], conv.turns[i], conv.id))
    return out

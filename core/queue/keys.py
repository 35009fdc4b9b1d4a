"""Every Redis key parley uses, in one place.

Chats are spread over `partitions`; a partition's keys, and so all keys of each of its
chats, share one Redis Cluster hash tag (`{p3}`), so every Lua script touches a single slot
and runs unchanged on Redis Cluster. One Redis server is the case of any partition count.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from core.messages import ChatKey


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "parley"
    partitions: int = 8

    def partition(self, chat: ChatKey) -> int:
        return zlib.crc32(str(chat).encode()) % self.partitions

    def _tag(self, partition: int) -> str:
        return f"{self.prefix}:{{p{partition}}}"

    def chat_prefix(self, partition: int) -> str:
        """What every chat key of a partition starts with; the Lua scripts append the chat."""
        return f"{self._tag(partition)}:chat:"

    def _chat(self, chat: ChatKey) -> str:
        return f"{self.chat_prefix(self.partition(chat))}{chat}"

    @property
    def wake(self) -> str:
        """Pub/sub channel on which a chat that becomes ready wakes idle workers."""
        return f"{self.prefix}:wake"

    def outbox_wake(self, platform: str) -> str:
        """Pub/sub channel on which a first unsent reply wakes the platform's senders."""
        return f"{self.prefix}:outbox-wake:{platform}"

    # per partition
    def ready(self, partition: int) -> str:
        """ZSET chat -> time from which it may be claimed; the oldest is served first."""
        return f"{self._tag(partition)}:ready"

    def leases(self, partition: int) -> str:
        """ZSET chat -> lease expiry (ms) of chats being answered."""
        return f"{self._tag(partition)}:leases"

    def dead(self, partition: int) -> str:
        """LIST of messages the responder failed on every time, with the error."""
        return f"{self._tag(partition)}:dead"

    def outbox_ready(self, partition: int, platform: str) -> str:
        """ZSET chat -> time, of one platform's chats with replies to send: when they are
        due, or, while a sender holds one, when its send lease runs out."""
        return f"{self._tag(partition)}:outbox-ready:{platform}"

    def outbox_owners(self, partition: int, platform: str) -> str:
        """HASH chat -> sender identity, of one platform's chats leased to a sender: a sender
        restarted under the same identity takes its chats back at once."""
        return f"{self._tag(partition)}:outbox-owners:{platform}"

    # per chat
    def inbox(self, chat: ChatKey) -> str:
        return f"{self._chat(chat)}:inbox"

    def seen(self, chat: ChatKey) -> str:
        """ZSET platform message id -> time, for deduplication."""
        return f"{self._chat(chat)}:seen"

    def lease(self, chat: ChatKey) -> str:
        """HASH token, message id, attempts of the head message being answered."""
        return f"{self._chat(chat)}:lease"

    def outbox(self, chat: ChatKey) -> str:
        return f"{self._chat(chat)}:outbox"

    def send_lease(self, chat: ChatKey) -> str:
        """HASH token, owner, acks of the sender holding the chat's outbox; it expires
        when the lease runs out."""
        return f"{self._chat(chat)}:send-lease"

    def sent(self, chat: ChatKey) -> str:
        """ZSET of the chat's latest sends within its rate window, at most its per-chat
        limit of them (score: ms)."""
        return f"{self._chat(chat)}:sent"

    def rate(self, chat: ChatKey, sender: str) -> str:
        """Messages the person sent to the chat in the current rate window (INCR; expires
        with the window)."""
        return f"{self._chat(chat)}:rate:{sender}"

    def context(self, chat: ChatKey, thread: str) -> str:
        return f"{self._chat(chat)}:context:{thread}"

    def history(self, chat: ChatKey) -> str:
        """LIST of a web room's latest messages, each "SEQ JSON", oldest first."""
        return f"{self._chat(chat)}:history"

    def history_seq(self, chat: ChatKey) -> str:
        """The sequence number of the room's latest message (INCR)."""
        return f"{self._chat(chat)}:history-seq"

"""Prometheus metrics every parley process exports on `/metrics`.

Labelled by platform (`telegram`, `slack`, `web`) so one dashboard covers all adapters.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECEIVED = Counter(
    "parley_received", "Platform events received (before any filtering)", ["platform"]
)
IGNORED = Counter(
    "parley_ignored",
    "Events deliberately not answered (chatter, bots, edits, non-text, ...)",
    ["platform", "reason"],
)
REJECTED = Counter(
    "parley_rejected",
    "Requests refused (bad signature, stale, wrong secret, malformed)",
    ["platform", "reason"],
)
ENQUEUED = Counter(
    "parley_enqueued",
    "Messages handed to the queue, by result (queued, duplicate, busy, rate_limited)",
    ["platform", "result"],
)
SENT = Counter("parley_sent", "Replies the platform accepted", ["platform"])
MESSAGES_SENT = Counter(
    "parley_messages_sent",
    "Platform messages sent (several replies can share one when a chat falls behind)",
    ["platform"],
)
RETRIED = Counter(
    "parley_retried", "Sends deferred to try again (429, 5xx, network)", ["platform", "reason"]
)
DROPPED = Counter(
    "parley_dropped", "Replies given up on (chat gone, bot removed, ...)", ["platform", "reason"]
)
QUEUE_CHATS = Gauge(
    "parley_queue_chats",
    "Chats waiting: for a worker (inbox), or with unsent replies for this platform (outbox)",
    ["platform", "queue"],
)
LATENCY = Histogram(
    "parley_reply_latency_seconds",
    "From the question's arrival to the platform accepting the reply",
    ["platform"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 180, 600),
)
ANSWERED = Counter("parley_answered", "Messages the worker answered, by outcome", ["outcome"])
BATCH = Histogram(
    "parley_batch_size", "Messages per model batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)

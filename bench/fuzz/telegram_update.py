"""Fuzz the Telegram webhook's body parser: bytes become an Update or None, never an error.

.venv/bin/python -m bench.fuzz.telegram_update -max_total_time=300
"""

from __future__ import annotations

from adapters.telegram import TelegramAdapter
from bench.fuzz.common import fuzz
from core.queue.memory_store import MemoryStore

ADAPTER = TelegramAdapter(MemoryStore(), "123456:FUZZ-token-for-parsing-only")


def target(data: bytes) -> None:
    ADAPTER._update(data)


if __name__ == "__main__":
    fuzz(target)

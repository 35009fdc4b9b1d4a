"""Fuzz `core.gate.text` and `core.gate.name`: the result always encodes to UTF-8 and fits."""

from __future__ import annotations

from bench.fuzz.common import fuzz, text
from core import gate


def target(data: bytes) -> None:
    value = text(data)
    out = gate.text(value, 500)
    out.encode("utf-8")
    assert len(out) <= 500
    assert gate.text(out, 500) == out
    gate.name(value).encode("utf-8")


if __name__ == "__main__":
    fuzz(target)

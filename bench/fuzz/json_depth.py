"""Fuzz `core.gate.loads`: JSON from outside parses or is refused, never anything else, and
what parses nests no deeper than the limit."""

from __future__ import annotations

from bench.fuzz.common import fuzz
from core import gate


def nesting(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(nesting, value.values()), default=0)
    return 0


def target(data: bytes) -> None:
    try:
        value = gate.loads(data)
    except gate.Refused:
        return
    assert nesting(value) <= gate.MAX_DEPTH


if __name__ == "__main__":
    fuzz(target)

"""Fuzz the web chat's frame parser and a say frame's text, as `WebAdapter._frame` uses them."""

from __future__ import annotations

from adapters.web.server import _parse
from bench.fuzz.common import fuzz, text
from core import gate


def target(data: bytes) -> None:
    frame = _parse(text(data))
    if isinstance(frame, dict) and isinstance(frame.get("text"), str):
        gate.text(frame["text"]).encode("utf-8")


if __name__ == "__main__":
    fuzz(target)

"""Fuzz the Slack adapter's body check and markup conversion: a body passes or is refused
with `gate.Refused`; plain text from any markup encodes."""

from __future__ import annotations

import contextlib

from adapters.slack import _check_shape, to_plain
from bench.fuzz.common import fuzz, text
from core import gate


def target(data: bytes) -> None:
    body = text(data)
    for content_type in ("application/json", "application/x-www-form-urlencoded"):
        with contextlib.suppress(gate.Refused):
            _check_shape(body, content_type)
    to_plain(gate.text(body), "UBOT").encode("utf-8")


if __name__ == "__main__":
    fuzz(target)

"""The gate every piece of outside input passes before parley queues, keeps or shows it.

Browsers, Telegram, Slack and corpus files may send any sequence of code points: lone
UTF-16 surrogates (a JSON `\\ud800` escape decodes to one, and UTF-8 cannot encode it),
control characters, bidi overrides that reorder what others see, megabytes of text, JSON
nested deeper than Python's stack. Past the gate, text encodes to UTF-8, holds no control
character but tab and newline, and fits its limit; ids match their pattern and length; JSON
was parsed with a nesting limit. Everything that refuses raises `Refused` with a short
reason, which callers count and answer with; nothing here logs.
"""

from __future__ import annotations

import json
import re
from typing import Any

TEXT_CHARS = 16_000  # longest text kept from any platform (questions are cut shorter later)
NAME_CHARS = 64  # display names
MAX_DEPTH = 32  # JSON nesting; platforms send 5 or 6 levels
REPLACEMENT = "\ufffd"

# U+D800-DFFF: half of a UTF-16 pair, meaningless alone and unencodable in UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 and C1 controls but tab and newline, and the bidi embeddings, overrides and isolates,
# which could make a message hide or reorder the text shown around it.
_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SPACE = re.compile(r"\s+")
# What decides JSON's nesting: brackets, and the quotes and escapes that hide brackets in
# strings. Scanning only these keeps `depth` linear (a string-matching regex is not).
_SIGNIFICANT = re.compile(r'[\[\]{}"\\]')


class Refused(ValueError):
    """Input the gate does not let through; `reason` is a short label (metrics, errors)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def encodable(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD, so it encodes to UTF-8."""
    return _SURROGATE.sub(REPLACEMENT, text) if _SURROGATE.search(text) else text


def text(value: object, limit: int = TEXT_CHARS) -> str:
    """A message's text as parley keeps it: encodable, line ends as `\\n`, hidden characters
    removed, stripped, at most `limit` characters. Raises `Refused` if not a string."""
    if not isinstance(value, str):
        raise Refused("not_text", type(value).__name__)
    # Cut before cleaning too: the work below stays proportional to the limit.
    value = value[: limit * 2].replace("\r\n", "\n").replace("\r", "\n")
    return _HIDDEN.sub("", encodable(value)).strip()[:limit].rstrip()


def name(value: object, limit: int = NAME_CHARS) -> str:
    """A display name: `text` on one line, runs of white space folded to one space."""
    return _SPACE.sub(" ", text(value, limit * 2)).strip()[:limit].rstrip()


def ident(value: object, pattern: re.Pattern[str], what: str = "id") -> str:
    """`value` if it is a string that `pattern` matches in full (the pattern bounds the
    length), else `Refused("bad_<what>")`. Integers are taken as their decimal form."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise Refused(f"bad_{what}")
    return value


def number(value: str | None, digits: int = 15) -> int:
    """A non-negative decimal of ASCII digits; 0 for anything else."""
    if value and len(value) <= digits and value.isascii() and value.isdigit():
        return int(value)
    return 0


def depth(data: str, stop: int | None = None) -> int:
    """How deep the brackets of JSON text nest (brackets inside strings do not count);
    counting ends once it passes `stop`."""
    level = deepest = 0
    in_string = False
    escaped_at = -1  # the position of a character a backslash escapes
    for match in _SIGNIFICANT.finditer(data):
        char, at = match.group(), match.start()
        if in_string:
            if at == escaped_at:
                continue
            if char == "\\":
                escaped_at = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            level += 1
            deepest = max(deepest, level)
            if stop is not None and deepest > stop:
                break
        elif char in "]}":
            level -= 1
    return deepest


def loads(data: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON from outside: UTF-8, at most `max_depth` levels deep. Raises `Refused`
    ("bad_json", "too_deep") instead of ValueError or RecursionError."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused("bad_json", "not UTF-8") from None
    if depth(data, max_depth) > max_depth:
        raise Refused("too_deep", f"nested deeper than {max_depth}")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise Refused("bad_json", str(exc)[:100]) from None

"""The text gate and every ingress normaliser, against arbitrary Unicode, JSON and bytes."""

from __future__ import annotations

import contextlib
import json
import re
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.slack import _check_shape, to_plain
from adapters.web.server import _parse
from core import gate
from core.corpora.loaders import load_jsonl, load_tsv
from core.errors import CorpusError
from core.messages import ChatKey, Incoming, Reply
from core.text import normalize

EXAMPLES = settings(max_examples=200, deadline=None)
# Any code point, surrogates included (what a JSON \uXXXX escape can produce).
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=20,
)
HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\r]")


@EXAMPLES
@given(ANY_TEXT, st.integers(1, 400))
def test_gated_text_encodes_has_nothing_hidden_and_fits(value: str, limit: int) -> None:
    out = gate.text(value, limit)
    out.encode("utf-8")
    assert not HIDDEN.search(out)
    assert len(out) <= limit and out == out.strip()
    assert gate.text(out, limit) == out  # a second pass changes nothing


@EXAMPLES
@given(ANY_TEXT)
def test_names_are_one_line(value: str) -> None:
    out = gate.name(value)
    out.encode("utf-8")
    assert len(out) <= gate.NAME_CHARS and "\n" not in out and "  " not in out


@EXAMPLES
@given(st.one_of(JSON, st.binary()))
def test_non_text_is_refused_with_a_reason(value: object) -> None:
    if isinstance(value, str):
        return
    with pytest.raises(gate.Refused) as refused:
        gate.text(value)
    assert refused.value.reason == "not_text"


@EXAMPLES
@given(st.one_of(JSON, st.binary()))
def test_ids_match_their_pattern_or_are_refused(value: object) -> None:
    pattern = re.compile(r"[A-Za-z0-9_-]{1,40}")
    try:
        out = gate.ident(value, pattern, "team")
    except gate.Refused as exc:
        assert exc.reason == "bad_team"
    else:
        assert pattern.fullmatch(out)


@EXAMPLES
@given(st.one_of(st.none(), ANY_TEXT, st.integers(0, 10**20).map(str)))
def test_numbers_are_ascii_digits_or_zero(value: str | None) -> None:
    out = gate.number(value)
    if value is not None and value.isascii() and value.isdigit() and len(value) <= 15:
        assert out == int(value)
    else:
        assert out == 0


@EXAMPLES
@given(st.one_of(st.binary(max_size=300), ANY_TEXT, JSON.map(json.dumps)))
def test_loads_parses_or_refuses_never_anything_else(data: str | bytes) -> None:
    try:
        gate.loads(data)
    except gate.Refused as exc:
        assert exc.reason in ("bad_json", "too_deep")


@EXAMPLES
@given(JSON)
def test_depth_counts_what_json_nests(value: object) -> None:
    def nesting(v: object) -> int:
        if isinstance(v, list):
            return 1 + max(map(nesting, v), default=0)
        if isinstance(v, dict):
            return 1 + max(map(nesting, v.values()), default=0)
        return 0

    assert gate.depth(json.dumps(value)) == nesting(value)
    assert gate.depth(json.dumps(value, ensure_ascii=False)) == nesting(value)


@pytest.mark.parametrize("deep", ["[" * 100_000, '{"a":' * 50_000, "[" * 33 + "]" * 33])
def test_deep_json_is_refused_not_a_recursion_error(deep: str) -> None:
    with pytest.raises(gate.Refused) as refused:
        gate.loads(deep)
    assert refused.value.reason == "too_deep"


@EXAMPLES
@given(ANY_TEXT, ANY_TEXT)
def test_messages_always_serialise_to_utf8(text: str, name: str) -> None:
    message = Incoming(ChatKey("web", "lobby"), "u", text, "m1", sender_name=name)
    message.to_json().encode("utf-8")
    Reply.to(message, text).to_json().encode("utf-8")
    assert Incoming.from_json(message.to_json()).text == gate.encodable(text)


# -- the platforms' normalisers ---------------------------------------------------------------


@EXAMPLES
@given(st.one_of(ANY_TEXT, JSON.map(json.dumps)))
def test_web_frames_parse_to_json_or_none(data: str) -> None:
    _parse(data)  # never raises


@EXAMPLES
@given(
    st.one_of(ANY_TEXT, JSON.map(json.dumps), st.text(string.printable)),
    st.sampled_from(["application/json", "application/x-www-form-urlencoded", ""]),
)
def test_slack_bodies_pass_or_are_refused(body: str, content_type: str) -> None:
    with contextlib.suppress(gate.Refused):
        _check_shape(body, content_type)


@EXAMPLES
@given(ANY_TEXT)
def test_slack_markup_becomes_plain_text(text: str) -> None:
    to_plain(gate.text(text), "UBOT").encode("utf-8")


@pytest.fixture(scope="module")
def telegram():  # type: ignore[no-untyped-def]
    from adapters.telegram import TelegramAdapter
    from core.queue.memory_store import MemoryStore

    return TelegramAdapter(MemoryStore(), "123456:TEST-token-for-parsing-only")


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.one_of(
        st.binary(max_size=300),
        JSON.map(lambda v: json.dumps({"update_id": 1, "message": v}).encode()),
        JSON.map(lambda v: json.dumps(v).encode()),
    )
)
def test_telegram_webhook_bodies_become_updates_or_none(telegram, body: bytes) -> None:  # type: ignore[no-untyped-def]
    from telegram import Update

    out = telegram._update(body)  # never raises
    assert out is None or isinstance(out, Update)


# -- corpora ------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(ANY_TEXT, min_size=1, max_size=4), min_size=1, max_size=5))
def test_corpus_turns_always_encode(conversations: list[list[str]]) -> None:
    for turn in (t for c in conversations for t in c):
        text = normalize(turn)
        assert text.encode("utf-8").decode("utf-8") == text  # raises on a lone surrogate


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=400))
def test_corpus_files_load_or_name_the_fault(tmp_path: Path, data: bytes) -> None:
    for name, load in (("c.tsv", load_tsv), ("c.jsonl", load_jsonl)):
        path = tmp_path / name
        path.write_bytes(data)
        try:
            conversations = load(path)
        except CorpusError as exc:
            assert str(exc).startswith(f"{path}:")
            assert all(p.path == path and str(p).startswith(f"{path}:") for p in exc.problems)
            continue
        for conv in conversations:
            for turn in conv.turns:
                turn.encode("utf-8")

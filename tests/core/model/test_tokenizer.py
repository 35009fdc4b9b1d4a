from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ModelFormatError, VocabularyTooSmall
from core.model.tokenizer import EOS, SEP, UNK, Tokenizer

TEXTS = [
    "hello there, how are you doing today?",
    "I'm fine thanks, and you?",
    "the weather is lovely 🙂 let's go outside",
    "你好，最近怎么样？",
    "我很好，谢谢。你呢？",
    "今天天气很好，我们去公园吧",
] * 30


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(TEXTS, vocab_size=400)


@pytest.mark.parametrize(
    "text",
    [
        "hello there, how are you doing today?",
        "你好，最近怎么样？",
        "emoji 🙂👍🏽 and 🇯🇵 flags",
        "mixed 中文 and English 123",
        "rare characters 𠀀 ꙮ never seen",
    ],
)
def test_round_trip(tok: Tokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert UNK not in ids  # byte fallback: nothing is unknown
    assert tok.decode(ids) == text


def test_chinese_needs_no_segmentation(tok: Tokenizer) -> None:
    # a frequent phrase becomes few pieces rather than bytes
    assert len(tok.encode("你好")) <= 3


def test_context_is_joined_with_separator_and_cut_from_the_left(tok: Tokenizer) -> None:
    ids = tok.encode_context(["hello there", "你好"], max_tokens=0)
    assert SEP in ids
    assert tok.encode_context(["hello there", "你好"], max_tokens=3) == ids[-3:]


def test_decode_drops_special_ids(tok: Tokenizer) -> None:
    ids = tok.encode("hello there")
    assert tok.decode([0, 2, *ids, SEP, EOS]) == "hello there"


def test_save_load_and_corrupt(tok: Tokenizer, tmp_path: Path) -> None:
    tok.save(tmp_path / "t.model")
    again = Tokenizer.load(tmp_path / "t.model")
    assert again.encode("你好 hello") == tok.encode("你好 hello")
    (tmp_path / "bad.model").write_bytes(b"not a sentencepiece model")
    with pytest.raises(ModelFormatError, match="unreadable tokenizer"):
        Tokenizer.load(tmp_path / "bad.model")
    with pytest.raises(ModelFormatError, match="cannot read tokenizer"):
        Tokenizer.load(tmp_path / "missing.model")


@pytest.mark.parametrize("asked", [-5, 0, 1, 50, 261])
def test_too_small_vocabulary_names_the_smallest_that_works(asked: int) -> None:
    with pytest.raises(
        VocabularyTooSmall, match=r"too small for this corpus: .* at least \d+"
    ) as e:
        Tokenizer.train(TEXTS, vocab_size=asked)
    assert e.value.asked == asked
    needed = e.value.needed
    assert Tokenizer.train(TEXTS, vocab_size=needed).vocab_size == needed
    with pytest.raises(VocabularyTooSmall):
        Tokenizer.train(TEXTS, vocab_size=needed - 1)


def test_a_vocabulary_larger_than_the_texts_yield_is_cut_and_says_so() -> None:
    tok = Tokenizer.train(TEXTS, vocab_size=8000)
    assert 300 < tok.vocab_size < 8000

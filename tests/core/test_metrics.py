from __future__ import annotations

import pytest

from core import metrics
from core.text import normalize, words


def test_words_split_cjk_per_character() -> None:
    assert words("Hello 你好吗 world") == ["hello", "你", "好", "吗", "world"]


def test_normalize() -> None:
    assert normalize("  a\u0000b \t\n c  ") == "ab c"
    assert normalize("e\u0301") == "é"
    assert normalize("你好，世界") == "你好，世界"


def test_normalize_treats_ascii_as_it_treats_any_text() -> None:
    # ASCII text takes a shorter path; one letter beyond ASCII sends it the general way
    for code in range(128):
        text = f"a{chr(code)} {chr(code)}\r\x1fb"
        assert "é" + normalize(text) == normalize("é" + text), code


def test_distinct() -> None:
    assert metrics.distinct(["a b c", "a b d"], 1) == pytest.approx(4 / 6)
    assert metrics.distinct(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert metrics.distinct([], 2) == 0.0


def test_repeated_ngram_rate() -> None:
    assert metrics.repeated_ngram_rate(["i i i i"], 2) == pytest.approx(2 / 3)
    assert metrics.repeated_ngram_rate(["a b c d"], 2) == 0.0


def test_blandness() -> None:
    replies = ["i don't know"] * 5 + [f"reply {i}" for i in range(15)]
    assert metrics.blandness(replies, top=1) == pytest.approx(0.25)
    assert metrics.blandness(replies, top=10) == pytest.approx(14 / 20)


def test_bleu2() -> None:
    assert metrics.bleu2(["the cat sat"], ["the cat sat"]) == pytest.approx(1.0)
    assert metrics.bleu2(["dog"], ["the cat sat"]) == 0.0
    partial = metrics.bleu2(["the cat ran"], ["the cat sat"])
    assert 0.0 < partial < 1.0


def test_first_words_cuts_at_a_word_count() -> None:
    assert metrics.first_words(["A b c", "d E", "f"], 4) == ["a b c", "d"]
    assert metrics.first_words(["a b"], 10) == ["a b"]
    assert metrics.first_words(["你好 x"], 2) == ["你 好"]
    assert metrics.first_words(["a"], 0) == []

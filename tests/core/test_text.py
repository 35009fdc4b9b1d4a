"""Sentence helpers and the mid-sentence metric."""

from __future__ import annotations

from core.metrics import mid_sentence
from core.text import ends_sentence, first_sentences, last_sentences, sentences


def test_sentences_split_at_end_marks_in_english_and_chinese() -> None:
    assert sentences("hi. how are you? i am fine") == ["hi.", "how are you?", "i am fine"]
    assert sentences("你好。我很好！你呢") == ["你好。", "我很好！", "你呢"]
    assert sentences('He said "wow." Then left') == ['He said "wow."', "Then left"]
    assert sentences("e.g. this one") == ["e.g.", "this one"]
    assert sentences("") == []


def test_ends_sentence() -> None:
    assert ends_sentence("Sounds great!")
    assert ends_sentence("I GOT THE JOB 🎉")
    assert ends_sentence("好的。")
    assert not ends_sentence("But the other reason I")
    assert not ends_sentence("")


def test_first_and_last_sentences_keep_whole_sentences() -> None:
    text = "Yeah that's cool. So what are you doing this weekend? I'm going to the lake with"
    assert first_sentences(text, 4) == "Yeah that's cool."
    assert first_sentences(text, 12) == "Yeah that's cool. So what are you doing this weekend?"
    assert first_sentences("one two three four five.", 3) == ""
    assert last_sentences("I ate. Then I slept. Did you?", 5) == "Then I slept. Did you?"
    assert last_sentences("I ate. Then I slept. Did you?", 4) == "Did you?"
    assert last_sentences("one two three four five six", 3) == "four five six"


def test_mid_sentence_share() -> None:
    replies = ["sounds good", "...But the other reason I", "I went to the", "ok,", "Yes."]
    assert mid_sentence(replies) == 3 / 5
    assert mid_sentence([]) == 0.0

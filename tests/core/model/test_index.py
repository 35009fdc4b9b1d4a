"""The reply index: English and Chinese retrieval, context, scores, save and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import ModelFormatError
from core.model import index as index_module
from core.model.index import ReplyIndex, terms

PAIRS = [
    ("what is your favorite food?", "I love pizza with extra cheese."),
    ("do you like music?", "Yes, I play the guitar in a band."),
    ("how was the weather today?", "It rained all afternoon."),
    ("hello there!", "Hi! How are you?"),
    ("do you like pizza?", "Only with pineapple, honestly."),
    ("你喜欢吃什么？", "我喜欢吃饺子。"),
    ("今天天气怎么样？", "今天下雨了。"),
]


@pytest.fixture(scope="module")
def index() -> ReplyIndex:
    return ReplyIndex.build(PAIRS)


def test_terms_drop_punctuation_and_split_chinese_per_character() -> None:
    assert terms("What's your FAVORITE food?!") == ["what's", "your", "favorite", "food"]
    assert terms("你好，世界") == ["你", "好", "世", "界"]


def test_nearest_message_gives_its_reply(index: ReplyIndex) -> None:
    assert index.search(["so what's your favourite food"], 1)[0].text.startswith("I love pizza")
    assert index.search(["do you like music"], 1)[0].text.startswith("Yes, I play")


def test_chinese_is_matched_per_character(index: ReplyIndex) -> None:
    assert index.search(["你最喜欢吃什么"], 1)[0].text == "我喜欢吃饺子。"
    assert index.search(["天气怎么样"], 1)[0].text == "今天下雨了。"


def test_earlier_turns_steer_a_follow_up(index: ReplyIndex) -> None:
    # "do you like ...?" alone is ambiguous; the earlier turn says what it is about
    hits = index.search(["i had pizza for lunch", "do you like it?"], 2)
    assert hits[0].text == "Only with pineapple, honestly."


def test_similarity_is_a_cosine_that_unknown_words_lower(index: ReplyIndex) -> None:
    exact = index.search(["hello there!"], 1)[0].similarity
    padded = index.search(["hello there, zyzzyva quokka"], 1)[0].similarity
    assert 0.6 < exact <= 1.0 + 1e-6
    assert padded < exact
    assert index.search(["zyzzyva"], 3) == []


def test_similarity_of_pairs_outside_the_index_matches_search(index: ReplyIndex) -> None:
    turns = ["what is your favorite food?"]
    hit = index.search(turns, 1)[0]
    (again,) = index.similarity(turns, [PAIRS[0]])
    assert again == pytest.approx(hit.similarity, abs=1e-3)


def test_duplicates_and_empty_pairs_are_dropped() -> None:
    built = ReplyIndex.build([*PAIRS, PAIRS[0], ("", "no message"), ("!!", "no words")])
    assert len(built) == len(PAIRS)
    with pytest.raises(ValueError, match=r"no \(message, reply\) pair with words"):
        ReplyIndex.build([("", "x")])


def test_save_and_load_round_trip(index: ReplyIndex, tmp_path: Path) -> None:
    index.prior = np.arange(len(index), dtype=np.float32)
    path = tmp_path / "index.npz"
    index.save(path)
    loaded = ReplyIndex.load(path)
    assert loaded.replies == index.replies
    assert loaded.scripts == index.scripts == {"LATIN", "CJK"}
    np.testing.assert_array_equal(loaded.prior, index.prior)
    for turns in (["do you like music"], ["你喜欢吃什么"]):
        assert [h.text for h in loaded.search(turns, 3)] == [h.text for h in index.search(turns, 3)]


def test_missing_corrupt_and_other_version_are_clear_errors(
    index: ReplyIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ModelFormatError, match="missing"):
        ReplyIndex.load(tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(ModelFormatError, match="corrupt"):
        ReplyIndex.load(tmp_path / "bad.npz")
    monkeypatch.setattr(index_module, "VERSION", 99)
    index.save(tmp_path / "future.npz")
    monkeypatch.undo()
    with pytest.raises(ModelFormatError, match=r"version 99.*parley index"):
        ReplyIndex.load(tmp_path / "future.npz")


def test_similarity_follows_the_reply_weight_the_index_was_built_with() -> None:
    questions_only = ReplyIndex.build(PAIRS, reply_weight=0.0)
    turns = ["do you like music?"]
    hit = questions_only.search(turns, 1)[0]
    (again,) = questions_only.similarity(turns, [PAIRS[1]])
    assert again == pytest.approx(hit.similarity, abs=1e-3)

"""The persona: identity questions answered in character, every time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import ModelFormatError
from core.model.index import scripts_of
from core.model.persona import Persona

PERSONAS = Path(__file__).resolve().parents[3] / "core" / "model" / "personas"
IDENTITY = {
    "name": ["what's your name?", "What is your name", "who are you?", "so what should i call you"],
    "bot": ["are you a bot?", "wait, are you a robot??", "are you human", "are you an ai?"],
    "maker": ["who made you?", "who created you", "who built you lol"],
    "age": ["how old are you?", "and how old are you", "when were you born"],
}


@pytest.fixture(scope="module")
def english() -> Persona:
    return Persona.load(PERSONAS / "en.yml")


def test_identity_questions_are_answered_in_character_every_time(english: Persona) -> None:
    rng = np.random.default_rng(0)
    for kind, questions in IDENTITY.items():
        answers = {english.answer(q, "Robin", rng) for q in questions for _ in range(5)}
        assert None not in answers, (kind, questions)
        if kind == "name":
            assert all("Robin" in str(a) for a in answers)
        if kind == "bot":
            assert all("bot" in str(a) for a in answers)


def test_other_messages_are_left_to_the_model(english: Persona) -> None:
    rng = np.random.default_rng(0)
    for message in ["what did you have for dinner?", "the train was late again", "是的", ""]:
        assert english.answer(message, "parley", rng) is None


def test_near_questions_become_candidates_not_answers(english: Persona) -> None:
    message = "ok and what can you actually do?"
    assert english.answer(message, "parley", np.random.default_rng(0)) is None
    candidates = english.candidates(message, "parley")
    assert candidates and all(0 < s < 1 for _, s in candidates)


def test_chinese_persona_and_default_choice() -> None:
    chinese = Persona.load(PERSONAS / "zh.yml")
    rng = np.random.default_rng(0)
    assert "小明" in str(chinese.answer("你叫什么名字？", "小明", rng))
    assert "机器人" in str(chinese.answer("你是机器人吗", "小明", rng))
    assert chinese.language_reply
    assert Persona.default_for(scripts_of(["我喜欢吃饺子。", "今天下雨了。"])).name == "zh.yml"
    assert Persona.default_for(scripts_of(["I love pizza.", "It rained."])).name == "en.yml"


def test_install_keeps_an_edited_persona(tmp_path: Path) -> None:
    path = Persona.install(tmp_path, scripts_of(["hello"]))
    assert path.read_text() == (PERSONAS / "en.yml").read_text()
    path.write_text("entries: []\n")
    Persona.install(tmp_path, scripts_of(["hello"]))
    assert path.read_text() == "entries: []\n"
    assert Persona.load(path).answer("what's your name", "x", np.random.default_rng(0)) is None


@pytest.mark.parametrize(
    "text",
    [
        "entries: [{questions: [hi]}]",
        "entries: [{questions: [hi], answers: []}]",
        "entries: [{questions: [yes], answers: [ok]}]",  # YAML reads a bare yes as true
        "entries: {questions: [hi]}",
        "- just a list",
        "entries: [unclosed",
    ],
)
def test_malformed_persona_is_a_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "persona.yml"
    path.write_text(text)
    with pytest.raises(ModelFormatError, match="persona"):
        Persona.load(path)


def test_its_tastes_are_the_same_however_it_is_asked(english: Persona) -> None:
    rng = np.random.default_rng(0)
    asked = ["what's your favorite color?", "What is your favourite colour", "favorite color?"]
    answers = {english.answer(q, "parley", rng) for q in asked for _ in range(3)}
    assert len(answers) == 1 and None not in answers

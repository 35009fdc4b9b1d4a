"""The bot's persona: what it says about itself and to a group's everyday moments.

A small YAML file in the model directory (`persona.yml`), editable by whoever runs the
bot. Each entry lists questions and answers; a message whose words are close enough to
one of an entry's questions (TF-IDF cosine, the reply index's measure) gets one of its
answers, so "what's your name?" is answered in character every time. The file also names
the model's language and what to say to a message in a script the model cannot read.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from core.errors import ModelFormatError
from core.model.index import ReplyIndex

FILE = "persona.yml"
MATCH = 0.65  # cosine from which a message counts as one of an entry's questions
NEAR = 0.45  # from here, the nearest entry's answers join the candidates the model ranks


@dataclass(frozen=True, slots=True)
class Entry:
    questions: tuple[str, ...]
    answers: tuple[str, ...]


class Persona:
    def __init__(
        self,
        entries: Sequence[Entry],
        language: str = "",
        language_reply: str = "",
        background: ReplyIndex | None = None,
    ) -> None:
        """`background`: the model's reply index, which knows how common each word is (so
        "ok, and what can you do?" is still "what can you do?")."""
        self.entries = list(entries)
        self.language = language
        self.language_reply = language_reply
        # the index's "replies" are entry numbers: only the questions' words count
        pairs = [(q, str(i)) for i, e in enumerate(self.entries) for q in e.questions]
        self._index = ReplyIndex.build(pairs, background, reply_weight=0.0) if pairs else None

    @classmethod
    def load(cls, path: Path, background: ReplyIndex | None = None) -> Persona:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ModelFormatError(f"{path}: unreadable persona ({exc})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("entries", []), list):
            raise ModelFormatError(f"{path}: a persona is a mapping with an 'entries' list")
        entries = []
        for n, item in enumerate(doc.get("entries") or [], start=1):
            questions = _strings(item.get("questions") if isinstance(item, dict) else None)
            answers = _strings(item.get("answers") if isinstance(item, dict) else None)
            if not (questions and answers):
                raise ModelFormatError(
                    f"{path}: entry {n} needs non-empty lists of 'questions' and 'answers' "
                    "(quote a word YAML reads as something else, like 'yes' or 'no')"
                )
            entries.append(Entry(questions, answers))
        language, reply = str(doc.get("language", "")), str(doc.get("language_reply", ""))
        return cls(entries, language, reply, background)

    @classmethod
    def default_for(cls, scripts: frozenset[str]) -> Path:
        """The persona shipped with parley for a corpus written in `scripts` (`scripts_of`,
        as a reply index records them)."""
        name = "zh.yml" if "CJK" in scripts else "en.yml"
        return Path(str(resources.files("core.model").joinpath("personas", name)))

    @staticmethod
    def install(directory: Path, scripts: frozenset[str]) -> Path:
        """Put the default persona into a model directory unless it already has one."""
        path = directory / FILE
        if not path.exists():
            shutil.copyfile(Persona.default_for(scripts), path)
        return path

    def nearest(self, message: str) -> tuple[Entry, float] | None:
        """The entry whose questions are closest to `message`, and how close (cosine)."""
        hits = self._index.search([message], 1) if self._index else []
        return (self.entries[int(hits[0].text)], hits[0].similarity) if hits else None

    def answer(self, message: str, name: str, rng: np.random.Generator) -> str | None:
        """An answer in character if `message` is one of the persona's questions."""
        near = self.nearest(message)
        if near is None or near[1] < MATCH:
            return None
        answers = near[0].answers
        return answers[int(rng.integers(len(answers)))].replace("{name}", name)

    def candidates(self, message: str, name: str) -> list[tuple[str, float]]:
        """The answers of an entry that `message` is close to but not close enough to take
        for granted, with the closeness, for the model to weigh among other candidates."""
        near = self.nearest(message)
        if near is None or not NEAR <= near[1] < MATCH:
            return []
        return [(a.replace("{name}", name), near[1]) for a in near[0].answers]


def _strings(value: object) -> tuple[str, ...]:
    """The list of strings `value` is, or () if it is anything else."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return ()

"""Corpus loaders: each turns one on-disk format into `Conversation`s.

Every loader raises `CorpusError` naming the file (and line) for missing files,
undecodable bytes, malformed records and corpora without a single exchange.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import yaml

from core.corpora.types import Conversation
from core.errors import CorpusError
from core.text import normalize

CORNELL_SEP = " +++$+++ "


def _read_text(path: Path, encodings: tuple[str, ...] = ("utf-8",)) -> str:
    if not path.is_file():
        raise CorpusError(path, "no such file")
    data = path.read_bytes()
    for enc in encodings:
        try:
            return data.decode(enc)
        except UnicodeDecodeError as exc:
            last = exc
    line = data[: last.start].count(b"\n") + 1
    raise CorpusError(path, f"not valid {encodings[0]} text (byte {last.start})", line)


def _lines(path: Path, encodings: tuple[str, ...] = ("utf-8",)) -> Iterator[tuple[int, str]]:
    text = _read_text(path, encodings).lstrip("\ufeff")
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line


def _merge_speakers(turns: list[tuple[str, str]]) -> tuple[str, ...]:
    """Join consecutive (speaker, text) pairs of one speaker into one turn."""
    merged: list[tuple[str, str]] = []
    for speaker, text in turns:
        text = normalize(text)
        if not text:
            continue
        if merged and merged[-1][0] == speaker:
            merged[-1] = (speaker, merged[-1][1] + " " + text)
        else:
            merged.append((speaker, text))
    return tuple(text for _, text in merged)


def _nonempty(conversations: list[Conversation], path: object) -> list[Conversation]:
    kept = [c for c in conversations if len(c.turns) >= 2]
    if not kept:
        raise CorpusError(path, "no conversation with at least two turns")
    return kept


def load_chitchat(path: Path | None = None) -> list[Conversation]:
    """The `chitchat-dataset` package's conversations (or a file in its format)."""
    if path is None:
        path = Path(str(resources.files("chitchat_dataset").joinpath("dataset.json")))
    try:
        data = json.loads(_read_text(path))
        convs = [
            Conversation(
                key,
                _merge_speakers(
                    [
                        (group[0]["sender"], " ".join(m["text"] for m in group))
                        for group in conv["messages"]
                        if group
                    ]
                ),
            )
            for key, conv in data.items()
        ]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise CorpusError(path, f"not in chitchat-dataset format: {exc!r}") from None
    return _nonempty(convs, path)


def _cornell_records(path: Path, width: int) -> Iterator[tuple[int, list[str]]]:
    # The original distribution is ISO-8859-1; re-encoded copies are UTF-8.
    for number, raw in _lines(path, ("utf-8", "iso-8859-1")):
        fields = raw.split(CORNELL_SEP)
        if len(fields) != width:
            sep = CORNELL_SEP.strip()
            found = len(fields)
            raise CorpusError(
                path, f"expected {width} fields separated by '{sep}', found {found}", number
            )
        yield number, fields


def load_cornell(directory: Path) -> list[Conversation]:
    """Cornell Movie-Dialogs: `movie_lines.txt` and `movie_conversations.txt` in `directory`."""
    lines_path = directory / "movie_lines.txt"
    convs_path = directory / "movie_conversations.txt"
    lines: dict[str, tuple[str, str]] = {}
    for _, fields in _cornell_records(lines_path, 5):
        lines[fields[0].strip()] = (fields[1].strip(), fields[4])
    convs: list[Conversation] = []
    for number, fields in _cornell_records(convs_path, 4):
        ids = [i.strip(" '\"") for i in fields[3].strip().strip("[]").split(",") if i.strip()]
        missing = [i for i in ids if i not in lines]
        if missing:
            raise CorpusError(
                convs_path, f"line id {missing[0]} is not in {lines_path.name}", number
            )
        convs.append(Conversation("+".join(ids), _merge_speakers([lines[i] for i in ids])))
    return _nonempty(convs, convs_path)


def chatterbot_language_dir(language: str) -> Path:
    """The data folder of one language shipped by the `chatterbot-corpus` package."""
    root = Path(str(resources.files("chatterbot_corpus").joinpath("data")))
    path = root / language
    if not path.is_dir():
        known = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir()))
        raise CorpusError(path, f"chatterbot-corpus has no language {language!r} (it has: {known})")
    return path


def load_chatterbot(path: Path) -> list[Conversation]:
    """ChatterBot corpus YAML: a file, or a folder of `.yml` files."""
    files = sorted(path.glob("*.yml")) + sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    if not files:
        raise CorpusError(path, "no .yml files in this folder")
    convs: list[Conversation] = []
    for file in files:
        try:
            doc = yaml.safe_load(_read_text(file))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise CorpusError(
                file,
                f"not valid YAML: {getattr(exc, 'problem', exc)}",
                mark.line + 1 if mark else None,
            ) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("conversations"), list):
            raise CorpusError(file, "expected a mapping with a 'conversations' list")
        for index, conv in enumerate(doc["conversations"]):
            if not isinstance(conv, list) or not all(
                isinstance(t, str | int | float) for t in conv
            ):
                raise CorpusError(file, f"conversation {index + 1} is not a list of strings")
            turns = tuple(t for t in (normalize(str(t)) for t in conv) if t)
            convs.append(Conversation(f"{file.name}#{index}", turns))
    return _nonempty(convs, path)


def load_tsv(path: Path) -> list[Conversation]:
    """One exchange per line: `context<TAB>reply`; more tabs give more context turns."""
    convs: list[Conversation] = []
    for number, line in _lines(path):
        fields = [normalize(f) for f in line.split("\t")]
        if len(fields) < 2:
            raise CorpusError(path, "no tab: expected 'context<TAB>reply'", number)
        if not all(fields):
            raise CorpusError(path, "empty field: expected 'context<TAB>reply'", number)
        convs.append(Conversation(f"{path.name}:{number}", tuple(fields)))
    return _nonempty(convs, path)


def load_jsonl(path: Path) -> list[Conversation]:
    """One conversation per line: `{"turns": ["...", "..."], "id": optional}`."""
    convs: list[Conversation] = []
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(path, f"not valid JSON: {exc.msg}", number) from None
        turns = record.get("turns") if isinstance(record, dict) else None
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise CorpusError(path, 'expected {"turns": ["...", "..."]}', number)
        conv_id = str(record.get("id", f"{path.name}:{number}"))
        convs.append(Conversation(conv_id, tuple(t for t in map(normalize, turns) if t)))
    return _nonempty(convs, path)

"""Corpus loaders: each turns one on-disk format into `Conversation`s.

Every loader raises `CorpusError` naming the file (and line) for missing files,
undecodable bytes, malformed records and corpora without a single exchange. A loader
reads its whole corpus before it raises, and the error lists every bad line (the first
`MAX_LISTED`, then how many more): a corpus is fixed in one pass, not one run per line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path

import yaml

from core.corpora.types import Conversation
from core.errors import CorpusError
from core.text import normalize

CORNELL_SEP = " +++$+++ "
MAX_LISTED = 20  # bad lines named in one error; the rest are counted


class Problems:
    """The bad lines of one corpus, gathered while it is read."""

    def __init__(self, where: object) -> None:
        self.where = where
        self.listed: list[CorpusError] = []
        self.total = 0

    def add(self, path: object, message: str, line: int | None = None) -> None:
        self.add_error(CorpusError(path, message, line))

    def add_error(self, error: CorpusError) -> None:
        self.total += 1
        if len(self.listed) < MAX_LISTED:
            self.listed.append(error)

    def check(self) -> None:
        """Raise one `CorpusError` for everything found so far, if anything was."""
        if self.total:
            raise CorpusError.several(self.where, self.listed, self.total)


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise CorpusError(path, "no such file")
    return path.read_bytes()


def _read_text(path: Path) -> str:
    """A whole file that must be UTF-8 (JSON, YAML: one bad byte spoils the document)."""
    data = _read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CorpusError(path, f"not valid utf-8 text (byte {exc.start})", line) from None


def _lines(
    path: Path, problems: Problems, encodings: tuple[str, ...] = ("utf-8",)
) -> Iterator[tuple[int, str]]:
    """The file's non-blank lines with their numbers, decoded with the first of `encodings`
    that fits the whole file (or else line by line, see `_line_by_line`)."""
    data = _read_bytes(path)
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    whole = _decode(data[bom:], encodings)
    numbered: Iterable[tuple[int, str | None]]
    if whole is not None:
        numbered = enumerate(whole.split("\n"), start=1)
    else:
        numbered = _line_by_line(path, data, bom, encodings, problems)
    for number, line in numbered:
        if line is not None and line.strip():
            yield number, line.rstrip("\r")


def _line_by_line(
    path: Path, data: bytes, start: int, encodings: tuple[str, ...], problems: Problems
) -> Iterator[tuple[int, str | None]]:
    """Each line decoded on its own: one that no encoding fits is a problem (and None), and
    the lines after it are still read. A newline byte is never inside a UTF-8 character."""
    offset = start
    for number, raw in enumerate(data[start:].split(b"\n"), start=1):
        line = _decode(raw, encodings)
        if line is None:
            bad = offset + _first_bad_byte(raw, encodings[0])
            problems.add(path, f"not valid {encodings[0]} text (byte {bad})", number)
        yield number, line
        offset += len(raw) + 1


def _decode(data: bytes, encodings: tuple[str, ...]) -> str | None:
    for enc in encodings:
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            pass
    return None


def _first_bad_byte(data: bytes, encoding: str) -> int:
    try:
        data.decode(encoding)
    except UnicodeDecodeError as exc:
        return exc.start
    return 0


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


def _cornell_records(path: Path, width: int, problems: Problems) -> Iterator[tuple[int, list[str]]]:
    # The original distribution is ISO-8859-1; re-encoded copies are UTF-8.
    for number, raw in _lines(path, problems, ("utf-8", "iso-8859-1")):
        fields = raw.split(CORNELL_SEP)
        if len(fields) != width:
            sep = CORNELL_SEP.strip()
            found = len(fields)
            problems.add(
                path, f"expected {width} fields separated by '{sep}', found {found}", number
            )
            continue
        yield number, fields


def load_cornell(directory: Path) -> list[Conversation]:
    """Cornell Movie-Dialogs: `movie_lines.txt` and `movie_conversations.txt` in `directory`."""
    lines_path = directory / "movie_lines.txt"
    convs_path = directory / "movie_conversations.txt"
    problems = Problems(directory)
    lines: dict[str, tuple[str, str]] = {}
    for _, fields in _cornell_records(lines_path, 5, problems):
        lines[fields[0].strip()] = (fields[1].strip(), fields[4])
    convs: list[Conversation] = []
    for number, fields in _cornell_records(convs_path, 4, problems):
        ids = [i.strip(" '\"") for i in fields[3].strip().strip("[]").split(",") if i.strip()]
        missing = [i for i in ids if i not in lines]
        if missing:
            problems.add(convs_path, f"line id {missing[0]} is not in {lines_path.name}", number)
            continue
        convs.append(Conversation("+".join(ids), _merge_speakers([lines[i] for i in ids])))
    problems.check()
    return _nonempty(convs, convs_path)


def chatterbot_language_dir(language: str) -> Path:
    """The data folder of one language shipped by the `chatterbot-corpus` package."""
    root = Path(str(resources.files("chatterbot_corpus").joinpath("data")))
    path = root / language
    if not path.is_dir():
        known = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir()))
        raise CorpusError(path, f"chatterbot-corpus has no language {language!r} (it has: {known})")
    return path


def _conversation_lines(text: str) -> list[int]:
    """The line each item of the document's `conversations` list starts on."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "conversations" and isinstance(value, yaml.SequenceNode):
                return [item.start_mark.line + 1 for item in value.value]
    return []


def load_chatterbot(path: Path) -> list[Conversation]:
    """ChatterBot corpus YAML: a file, or a folder of `.yml` files."""
    files = sorted(path.glob("*.yml")) + sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    if not files:
        raise CorpusError(path, "no .yml files in this folder")
    problems = Problems(path)
    convs: list[Conversation] = []
    for file in files:
        try:
            text = _read_text(file)
            doc = yaml.safe_load(text)
        except CorpusError as exc:  # not UTF-8: the next file may still be read
            problems.add_error(exc)
            continue
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", exc)
            problems.add(file, f"not valid YAML: {problem}", mark.line + 1 if mark else None)
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("conversations"), list):
            problems.add(file, "expected a mapping with a 'conversations' list")
            continue
        starts = _conversation_lines(text)
        for index, conv in enumerate(doc["conversations"]):
            if not isinstance(conv, list) or not all(
                isinstance(t, str | int | float) for t in conv
            ):
                line = starts[index] if index < len(starts) else None
                problems.add(file, f"conversation {index + 1} is not a list of strings", line)
                continue
            turns = tuple(t for t in (normalize(str(t)) for t in conv) if t)
            convs.append(Conversation(f"{file.name}#{index}", turns))
    problems.check()
    return _nonempty(convs, path)


def load_tsv(path: Path) -> list[Conversation]:
    """One exchange per line: `context<TAB>reply`; more tabs give more context turns."""
    problems = Problems(path)
    convs: list[Conversation] = []
    for number, line in _lines(path, problems):
        fields = [normalize(f) for f in line.split("\t")]
        if len(fields) < 2:
            problems.add(path, "no tab: expected 'context<TAB>reply'", number)
        elif not all(fields):
            problems.add(path, "empty field: expected 'context<TAB>reply'", number)
        else:
            convs.append(Conversation(f"{path.name}:{number}", tuple(fields)))
    problems.check()
    return _nonempty(convs, path)


def load_jsonl(path: Path) -> list[Conversation]:
    """One conversation per line: `{"turns": ["...", "..."], "id": optional}`."""
    problems = Problems(path)
    convs: list[Conversation] = []
    for number, line in _lines(path, problems):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.add(path, f"not valid JSON: {exc.msg}", number)
            continue
        turns = record.get("turns") if isinstance(record, dict) else None
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            problems.add(path, 'expected {"turns": ["...", "..."]}', number)
            continue
        conv_id = str(record.get("id", f"{path.name}:{number}"))
        convs.append(Conversation(conv_id, tuple(t for t in map(normalize, turns) if t)))
    problems.check()
    return _nonempty(convs, path)

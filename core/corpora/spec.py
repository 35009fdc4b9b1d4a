"""Corpus specs: the one string that names a corpus on the command line and in a model."""

from __future__ import annotations

from pathlib import Path

from core.corpora import loaders
from core.corpora.types import Conversation
from core.errors import CorpusError

KINDS = ("chitchat", "cornell", "chatterbot", "tsv", "jsonl")

HELP = (
    "chitchat (the bundled chitchat-dataset, default) "
    "| chatterbot:LANGUAGE[/TOPIC] (e.g. chatterbot:chinese, chatterbot:english/food) "
    "| chatterbot:FILE_OR_DIR.yml "
    "| cornell:DIR | tsv:FILE | jsonl:FILE; "
    "a bare path is recognised by its extension or, for a folder, by its files"
)


def _guess_kind(path: Path) -> str:
    if path.is_dir():
        if (path / "movie_lines.txt").exists():
            return "cornell"
        if any(path.glob("*.yml")) or any(path.glob("*.yaml")):
            return "chatterbot"
    suffix = path.suffix.lower()
    kinds = {
        ".tsv": "tsv",
        ".txt": "tsv",
        ".jsonl": "jsonl",
        ".yml": "chatterbot",
        ".yaml": "chatterbot",
        ".json": "chitchat",
    }
    if suffix in kinds:
        return kinds[suffix]
    raise CorpusError(path, f"cannot tell the corpus format; name it, as in tsv:{path}")


def resolve(spec: str) -> tuple[str, str]:
    """Split a spec into (kind, argument), guessing the kind of a bare path."""
    kind, sep, arg = spec.partition(":")
    if sep and kind in KINDS:
        return kind, arg
    if spec in KINDS:
        return spec, ""
    return _guess_kind(Path(spec)), spec


def load_corpus(spec: str) -> list[Conversation]:
    """Load the conversations a spec names."""
    kind, arg = resolve(spec)
    path = Path(arg).expanduser() if arg else None
    if kind == "chitchat":
        return loaders.load_chitchat(path)
    if path is None:
        raise CorpusError(spec, f"{kind} needs a path, as in {kind}:PATH")
    if kind == "cornell":
        if not path.is_dir():
            raise CorpusError(path, "cornell needs the folder holding movie_lines.txt")
        return loaders.load_cornell(path)
    if kind == "chatterbot":
        if not path.exists() and arg.count("/") <= 1:  # LANGUAGE or LANGUAGE/TOPIC
            language, _, topic = arg.partition("/")
            path = loaders.chatterbot_language_dir(language)
            if topic:
                path = path / f"{topic}.yml"
        return loaders.load_chatterbot(path)
    if kind == "tsv":
        return loaders.load_tsv(path)
    return loaders.load_jsonl(path)

"""Text normalisation and word splitting shared by the tokenizer, loaders and metrics."""

from __future__ import annotations

import re
import unicodedata

from core import gate

_SPACE = re.compile(r"\s+")
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # category Cc, less tab and newline
# Han, Hiragana, Katakana, Hangul: scripts written without spaces, counted per character.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_WORD = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]|[^\s\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+"
)


def normalize(text: str) -> str:
    """NFC, control characters dropped, runs of white space folded to one space.

    NFC rather than NFKC, so that full-width CJK punctuation stays as people type it.
    """
    if text.isascii():  # most text, and ranking normalizes thousands of replies a second
        return _SPACE.sub(" ", _ASCII_CONTROL.sub("", text)).strip()
    # Through the same gate as platform text: a lone surrogate becomes U+FFFD, here as there.
    text = unicodedata.normalize("NFC", gate.encodable(text))
    text = "".join(ch for ch in text if ch in "\t\n" or unicodedata.category(ch)[0] != "C")
    return _SPACE.sub(" ", text).strip()


def words(text: str) -> list[str]:
    """Words for metrics: white-space separated, but one word per CJK character."""
    return _WORD.findall(text.lower())


def is_cjk(text: str) -> bool:
    """Whether the text contains any CJK character."""
    return bool(_CJK.search(text))


# A sentence ends at . ! ? … (or their CJK forms), with any closing quotes, brackets
# and emoji after it, before white space or the end; CJK sentences need no space.
_SENTENCE = re.compile(r".+?(?:[.!?…]+[\"')\]]*(?=\s|$)|[。！？]+[」』）\"')]*|$)", re.DOTALL)
_ENDS = ".!?…。！？)\"'」』）"


def sentences(text: str) -> list[str]:
    """The sentences of a text, stripped, in order; the last may lack an end mark."""
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def ends_sentence(text: str) -> bool:
    """Whether the text ends where a sentence may end: an end mark, or a symbol (emoji)."""
    text = text.rstrip()
    return bool(text) and (text[-1] in _ENDS or unicodedata.category(text[-1]) == "So")


def first_sentences(text: str, max_words: int) -> str:
    """The longest run of whole sentences from the start within `max_words` words ("" if
    the first sentence alone is longer)."""
    kept: list[str] = []
    count = 0
    for sentence in sentences(text):
        count += len(words(sentence))
        if count > max_words:
            break
        kept.append(sentence)
    return " ".join(kept)


def last_sentences(text: str, max_words: int) -> str:
    """The longest run of whole sentences at the end within `max_words` words; the last
    sentence alone, cut to its last words, if it is longer."""
    parts = sentences(text)
    kept: list[str] = []
    count = 0
    for sentence in reversed(parts):
        count += len(words(sentence))
        if count > max_words and kept:
            break
        kept.insert(0, sentence)
    joined = " ".join(kept)
    return joined if len(words(joined)) <= max_words else " ".join(joined.split()[-max_words:])

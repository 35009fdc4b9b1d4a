"""Text normalisation and word splitting shared by the tokenizer, loaders and metrics."""

from __future__ import annotations

import re
import unicodedata

from core import gate

_SPACE = re.compile(r"\s+")
# Han, Hiragana, Katakana, Hangul: scripts written without spaces, counted per character.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_WORD = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]|[^\s\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+"
)


def normalize(text: str) -> str:
    """NFC, control characters dropped, runs of white space folded to one space.

    NFC rather than NFKC, so that full-width CJK punctuation stays as people type it.
    """
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

"""Subword tokenizer: SentencePiece unigram with byte fallback, trained on the corpus.

Byte fallback means any text (emoji, rare CJK characters) round-trips without <unk>,
and Chinese needs no word segmentation: pieces are learned from raw characters.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

from core.errors import ModelFormatError, VocabularyTooSmall
from core.text import normalize

PAD, UNK, BOS, EOS, SEP = 0, 1, 2, 3, 4
SEP_PIECE = "<sep>"


class Tokenizer:
    """Text to ids and back. Ids 0-4 are pad, unk, bos, eos and the turn separator."""

    def __init__(self, model_proto: bytes) -> None:
        self.proto = model_proto
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(model_proto)
        except (RuntimeError, OSError) as exc:
            raise ModelFormatError(f"unreadable tokenizer model: {exc}") from None
        if self._sp.piece_to_id(SEP_PIECE) != SEP or self._sp.eos_id() != EOS:
            raise ModelFormatError("tokenizer model does not have parley's special ids")

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int, seed_sentences: int = 300_000
    ) -> Tokenizer:
        """Learn a vocabulary of at most `vocab_size` pieces from `texts` (fewer when the
        texts do not yield that many: `vocab_size` of the result says how many).

        Raises `VocabularyTooSmall`, with the smallest size that works, when `vocab_size`
        cannot hold the texts' characters besides the special and byte pieces."""
        sentences = [t for t in (normalize(t) for t in texts) if t]
        if not sentences:
            raise ValueError("no text to train a tokenizer on")
        # Below this, SentencePiece fails before it counts the characters; asking for this
        # many finds how many the texts need.
        floor = SEP + 1 + 256 + 1
        try:
            proto = cls._train(sentences, max(vocab_size, floor), seed_sentences)
        except RuntimeError as exc:
            found = re.search(r"smaller than required_chars. \d+ vs (\d+)", str(exc))
            if found:
                raise VocabularyTooSmall(vocab_size, int(found.group(1))) from None
            raise
        if vocab_size < floor:
            raise VocabularyTooSmall(vocab_size, floor)
        return cls(proto)

    @staticmethod
    def _train(sentences: list[str], vocab_size: int, seed_sentences: int) -> bytes:
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=buf,
            model_type="unigram",
            vocab_size=vocab_size,
            hard_vocab_limit=False,  # small corpora get fewer pieces than asked for
            character_coverage=0.9995,
            byte_fallback=True,
            normalization_rule_name="identity",  # `normalize` already ran
            pad_id=PAD,
            unk_id=UNK,
            bos_id=BOS,
            eos_id=EOS,
            user_defined_symbols=[SEP_PIECE],
            input_sentence_size=seed_sentences,
            shuffle_input_sentence=True,
            num_threads=2,
            minloglevel=2,
        )
        return buf.getvalue()

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        try:
            return cls(path.read_bytes())
        except OSError as exc:
            raise ModelFormatError(f"{path}: cannot read tokenizer ({exc.strerror})") from None

    def save(self, path: Path) -> None:
        path.write_bytes(self.proto)

    @property
    def vocab_size(self) -> int:
        return int(self._sp.get_piece_size())

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(normalize(text)))

    def encode_context(self, turns: Sequence[str], max_tokens: int) -> list[int]:
        """Turns joined by the separator, cut from the left so the latest words stay."""
        ids: list[int] = []
        for i, turn in enumerate(turns):
            if i:
                ids.append(SEP)
            ids.extend(self.encode(turn))
        return ids[-max_tokens:] if max_tokens else ids

    def decode(self, ids: Iterable[int]) -> str:
        kept = [int(i) for i in ids if int(i) > SEP]
        return normalize(self._sp.decode(kept))

    def piece(self, token_id: int) -> str:
        return str(self._sp.id_to_piece(token_id))

    def content_mask(self) -> list[bool]:
        """Which ids show text on their own: not specials, word boundaries, control bytes
        or the first byte of a character that byte pieces spell out."""
        return [i > SEP and bool(normalize(self._sp.decode([i]))) for i in range(self.vocab_size)]

"""A deterministic train/validation/test split by conversation, never by pair."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from core.corpora.types import Conversation
from core.errors import ModelFormatError


def _rank(seed: int, conv_id: str) -> str:
    return hashlib.sha256(f"{seed}:{conv_id}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Split:
    """Which conversations are held out. Everything else is training data."""

    seed: int
    valid: frozenset[str]
    test: frozenset[str]

    @classmethod
    def make(
        cls,
        conversations: list[Conversation],
        valid_fraction: float = 0.05,
        test_fraction: float = 0.05,
        seed: int = 0,
    ) -> Split:
        """Order conversations by a seeded hash of their id and cut the held-out shares.

        Each held-out part gets at least one conversation when there are three or more.
        """
        ranked = sorted({c.id for c in conversations}, key=lambda i: _rank(seed, i))
        n = len(ranked)
        n_valid = max(1, round(n * valid_fraction)) if n >= 3 else 0
        n_test = max(1, round(n * test_fraction)) if n >= 3 else 0
        return cls(seed, frozenset(ranked[:n_valid]), frozenset(ranked[n_valid : n_valid + n_test]))

    def part(self, conversations: list[Conversation], name: str) -> list[Conversation]:
        """The conversations of one part: 'train', 'valid' or 'test'."""
        if name == "train":
            return [c for c in conversations if c.id not in self.valid and c.id not in self.test]
        ids = {"valid": self.valid, "test": self.test}[name]
        return [c for c in conversations if c.id in ids]

    def save(self, path: Path) -> None:
        path.write_text(
            json.dumps(
                {"seed": self.seed, "valid": sorted(self.valid), "test": sorted(self.test)},
                ensure_ascii=False,
            )
        )

    @classmethod
    def load(cls, path: Path) -> Split:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(int(data["seed"]), frozenset(data["valid"]), frozenset(data["test"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelFormatError(f"{path}: unreadable split file ({exc})") from None

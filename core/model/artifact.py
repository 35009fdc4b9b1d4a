"""A trained model on disk: one directory, one format version.

parley.json      format name and version, model config, corpus, default decoding, training
weights.npz      float16 weights keyed by layer path
tokenizer.model  the SentencePiece model
split.json       which conversations were held out for validation and test
history.json     per-epoch losses and throughput
loss.png         the loss curves
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.corpora.split import Split
from core.errors import ModelFormatError
from core.model.config import DecodeOptions, ModelConfig
from core.model.tokenizer import Tokenizer

FORMAT = "parley-seq2seq"
VERSION = 1
META, WEIGHTS, TOKENIZER, SPLIT, HISTORY = (
    "parley.json",
    "weights.npz",
    "tokenizer.model",
    "split.json",
    "history.json",
)


@dataclass
class ModelMeta:
    """What parley.json says about a model."""

    config: ModelConfig
    corpus: str
    decoding: DecodeOptions = field(default_factory=DecodeOptions)
    training: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "version": VERSION,
                "model": self.config.to_dict(),
                "corpus": self.corpus,
                "decoding": self.decoding.to_dict(),
                "training": self.training,
            },
            indent=2,
            ensure_ascii=False,
        )


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_meta(directory: Path) -> ModelMeta:
    path = directory / META
    if not path.is_file():
        raise ModelFormatError(f"{directory}: not a parley model directory ({META} is missing)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelFormatError(f"{path}: not a {FORMAT} model")
    if data.get("version") != VERSION:
        raise ModelFormatError(
            f"{path}: model format version {data.get('version')!r}; this parley "
            f"reads version {VERSION}. Retrain it with `parley train`."
        )
    try:
        return ModelMeta(
            ModelConfig.from_dict(data["model"]),
            str(data["corpus"]),
            DecodeOptions.from_dict(data.get("decoding", {})),
            dict(data.get("training", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: malformed ({exc})") from None


def write_meta(directory: Path, meta: ModelMeta) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_write(directory / META, meta.to_json().encode())


def save_weights(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    named = {k.replace("/", "|"): v for k, v in arrays.items()}  # "/" is a folder inside npz
    np.savez(tmp, **named)  # type: ignore[arg-type]  # numpy's stub reserves allow_pickle
    os.replace(tmp, path)


def load_weights(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ModelFormatError(f"{path}: weights file is missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k.replace("|", "/"): data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFormatError(f"{path}: corrupt weights file ({exc})") from None


def save_history(directory: Path, history: list[dict[str, float]]) -> None:
    _atomic_write(directory / HISTORY, json.dumps(history, indent=1).encode())


def load_history(directory: Path) -> list[dict[str, float]]:
    path = directory / HISTORY
    return list(json.loads(path.read_text())) if path.is_file() else []


def load_split(directory: Path) -> Split:
    return Split.load(directory / SPLIT)


def load_tokenizer(directory: Path) -> Tokenizer:
    return Tokenizer.load(directory / TOKENIZER)


def load_model(directory: Path):  # -> tuple[Seq2Seq, Tokenizer, ModelMeta]
    """Build the model a directory describes and load its weights; imports TensorFlow."""
    from core.model.seq2seq import Seq2Seq

    meta = read_meta(directory)
    tokenizer = load_tokenizer(directory)
    if tokenizer.vocab_size != meta.config.vocab_size:
        raise ModelFormatError(
            f"{directory}: tokenizer has {tokenizer.vocab_size} pieces, "
            f"the model expects {meta.config.vocab_size}"
        )
    model = Seq2Seq(meta.config).build_all()
    try:
        model.assign_weights(load_weights(directory / WEIGHTS))
    except (KeyError, ValueError) as exc:
        raise ModelFormatError(f"{directory / WEIGHTS}: does not fit the model ({exc})") from None
    return model, tokenizer, meta

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.errors import ModelFormatError
from core.model import artifact
from core.model.responder import Responder

pytestmark = pytest.mark.slow


@pytest.fixture
def model_copy(tiny_model: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model, tmp_path / "copy"))


def test_directory_holds_everything(tiny_model: Path) -> None:
    for name in (
        "parley.json",
        "weights.npz",
        "tokenizer.model",
        "split.json",
        "history.json",
        "loss.png",
    ):
        assert (tiny_model / name).is_file(), name
    assert not (tiny_model / "checkpoints").exists()  # removed once training finished
    meta = json.loads((tiny_model / "parley.json").read_text())
    assert meta["format"] == "parley-seq2seq" and meta["version"] == artifact.VERSION
    assert meta["training"]["epochs"] == len(artifact.load_history(tiny_model))
    with np.load(tiny_model / "weights.npz") as weights:
        assert all(weights[k].dtype == np.float16 for k in weights.files)


def test_reload_gives_the_same_replies(tiny_model: Path, tiny_responder: Responder) -> None:
    again = Responder.load(tiny_model, warm_up=False)
    contexts = [["how is the weather"], ["what did you eat"]]
    assert again.reply(contexts, method="greedy") == tiny_responder.reply(contexts, method="greedy")
    same_seed = {"method": "sample", "seed": 3}
    assert again.reply(contexts, **same_seed) == tiny_responder.reply(contexts, **same_seed)


def test_other_version_is_refused(model_copy: Path) -> None:
    meta = json.loads((model_copy / "parley.json").read_text())
    meta["version"] = artifact.VERSION + 1
    (model_copy / "parley.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match="format version 2; this parley reads version 1"):
        Responder.load(model_copy)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "parley.json").unlink(), "not a parley model directory"),
        (lambda d: (d / "parley.json").write_text("{broken"), "parley.json: unreadable"),
        (lambda d: (d / "weights.npz").write_bytes(b"\x00" * 100), "corrupt weights file"),
        (lambda d: (d / "weights.npz").unlink(), "weights file is missing"),
        (lambda d: (d / "tokenizer.model").write_bytes(b"junk"), "unreadable tokenizer"),
    ],
)
def test_damaged_directory_fails_clearly(model_copy: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    damage(model_copy)
    with pytest.raises(ModelFormatError, match=message):
        Responder.load(model_copy)


def test_weights_of_another_shape_are_refused(model_copy: Path) -> None:
    weights = artifact.load_weights(model_copy / "weights.npz")
    key = next(k for k in weights if k.endswith("bridge/kernel"))
    weights[key] = np.zeros((3, 3), np.float16)
    artifact.save_weights(model_copy / "weights.npz", weights)
    with pytest.raises(ModelFormatError, match=r"does not fit the model.*bridge/kernel"):
        Responder.load(model_copy)

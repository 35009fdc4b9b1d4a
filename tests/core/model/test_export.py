from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.model.config import DecodeOptions
from core.model.responder import Responder

pytestmark = pytest.mark.slow


def test_saved_model_signatures_match_the_responder(
    tiny_responder: Responder, tmp_path: Path
) -> None:
    import tensorflow as tf

    from core.model.export import export_saved_model

    export_saved_model(tiny_responder, tmp_path / "sm")
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    assert {"serving_default", "greedy", "beam", "sample"} <= set(loaded.signatures)
    source = tiny_responder.encode([["how is the weather"], ["what did you eat"]])
    for method in ("greedy", "beam"):
        out = loaded.signatures[method](source=tf.constant(source), max_length=tf.constant(12))
        expected = tiny_responder.generate_ids(source, DecodeOptions(method=method, max_length=12))
        np.testing.assert_array_equal(out["ids"].numpy(), expected)
    sampled = loaded.signatures["sample"](
        source=tf.constant(source),
        max_length=tf.constant(12),
        temperature=tf.constant(0.8),
        top_p=tf.constant(0.9),
        seed=tf.constant(3),
    )
    assert sampled["ids"].shape == (2, 12)
    # only stock TensorFlow ops: nothing custom for TensorFlow Serving to load
    ops = {
        node.op
        for f in loaded.signatures["beam"].graph.as_graph_def().library.function
        for node in f.node_def
    }
    assert not any(op.startswith(("Sentencepiece", "Keras")) for op in ops)

"""Packed scoring gives what the plain teacher-forced pass over padded replies gives."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from core.model.batches import pad
from core.model.scoring import Scorer, encode_replies
from core.model.tokenizer import BOS, PAD

pytestmark = pytest.mark.slow

CONTEXTS = [["hello there", "how is the weather"], ["what did you eat"], ["hi"]]
REPLIES = [
    "i love pizza with cheese",
    "ok",
    "it is sunny today and i think it will rain later, the weather is cold",
    "jazz is great music",
    "",
    "i run every morning 😀",
]


def plain(model, source: np.ndarray, targets: np.ndarray, owners: np.ndarray) -> np.ndarray:
    """Summed log p(target | context) the straightforward way: every padded position."""
    memory, mask, state = (tf.gather(x, owners) for x in model.encode(source))
    target_in = np.concatenate([np.full((len(targets), 1), BOS), targets[:, :-1]], axis=1)
    logits = model.project(model.decode(tf.constant(target_in, tf.int32), memory, mask, state))
    token = tf.gather(tf.nn.log_softmax(logits), targets, batch_dims=2)
    return tf.reduce_sum(tf.where(targets != PAD, token, 0.0), axis=-1).numpy()


def test_packed_scoring_matches_the_plain_pass(untrained_responder) -> None:  # type: ignore[no-untyped-def]
    responder = untrained_responder
    source = responder.encode(CONTEXTS)
    rows = encode_replies(responder.tokenizer, REPLIES, responder.meta.config.max_reply_tokens)
    targets = pad(rows)
    owners = np.array([0, 1, 2, 0, 1, 2], np.int32)  # rows of mixed lengths, in no order
    expected = plain(responder.model, source, targets, owners)
    got = Scorer(responder.model).log_probs(
        tf.constant(source), tf.constant(targets), tf.constant(owners)
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-4)


def test_log_probs_do_not_depend_on_the_batch(tiny_responder) -> None:  # type: ignore[no-untyped-def]
    responder = tiny_responder
    source = responder.encode(CONTEXTS)
    owners = [n % len(CONTEXTS) for n in range(len(REPLIES))]
    together = responder.log_probs(source, REPLIES, owners)
    alone = [
        responder.log_probs(source[owner : owner + 1], [reply])[0]
        for reply, owner in zip(REPLIES, owners, strict=True)
    ]
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)

"""How likely the model finds given replies: teacher-forced log-probabilities, batched.

Each context is encoded once; its K candidate replies then run through the decoder in
one pass, attending to their context's encoding (repeated K times, not re-encoded). The
whole computation is one `tf.function`.
"""

import numpy as np
import tensorflow as tf

from core.model.batches import pad
from core.model.tokenizer import BOS, EOS, PAD


class Scorer(tf.Module):
    """log p(reply | context) for every (context, candidate) pair of a batch."""

    def __init__(self, model, jit=False):
        super().__init__(name="scorer")
        self.model = model
        spec = tf.TensorSpec([None, None], tf.int32)
        compile_ = {"jit_compile": True} if jit else {}
        self.log_probs = tf.function(self._log_probs, input_signature=[spec, spec], **compile_)

    def _log_probs(self, source, targets):
        """source [B, S], targets [B*K, T] (reply + eos, padded) -> [B*K] summed log-probs."""
        model = self.model
        copies = tf.shape(targets)[0] // tf.shape(source)[0]
        memory, mask, state = model.encode(source)
        memory, mask, state = (tf.repeat(x, copies, axis=0) for x in (memory, mask, state))
        target_in = tf.concat([tf.fill([tf.shape(targets)[0], 1], BOS), targets[:, :-1]], 1)
        y = model.embedding(target_in)
        keep = tf.not_equal(targets, PAD)
        h, _ = model.decoder_gru(y, mask=keep, initial_state=state)
        logits = model.project(model._attend(h, memory, mask))
        token = tf.gather(tf.nn.log_softmax(logits), targets, batch_dims=2)
        return tf.reduce_sum(tf.where(keep, token, 0.0), axis=-1)


def encode_replies(tokenizer, replies, max_tokens):
    """Replies as decoder targets [N, T]: pieces (cut to fit) then eos, padded; lengths [N]."""
    rows = [np.asarray([*tokenizer.encode(r)[: max_tokens - 1], EOS], np.int32) for r in replies]
    return pad(rows), np.array([len(r) for r in rows], np.float32)

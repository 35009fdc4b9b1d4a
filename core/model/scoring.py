"""How likely the model finds given replies: teacher-forced log-probabilities, batched.

Each context is encoded once; its candidate replies then run through the decoder in one
pass, each attending to its own context's encoding (gathered, not re-encoded). The whole
computation is one `tf.function`.
"""

import numpy as np
import tensorflow as tf

from core.model.tokenizer import BOS, EOS, PAD


class Scorer(tf.Module):
    """log p(reply | context) for every (context, candidate) pair of a batch; works with
    any model that has `encode`, `decode` and `project` as `Seq2Seq` has."""

    def __init__(self, model):
        super().__init__(name="scorer")
        self.model = model
        matrix = tf.TensorSpec([None, None], tf.int32)
        vector = tf.TensorSpec([None], tf.int32)
        self.log_probs = tf.function(self._log_probs, input_signature=[matrix, matrix, vector])

    def _log_probs(self, source, targets, owners):
        """source [B, S]; targets [N, T] (reply + eos, padded), each answering the source
        row `owners` [N] names -> [N] summed log-probabilities."""
        model = self.model
        memory, mask, state = model.encode(source)
        memory, mask, state = (tf.gather(x, owners) for x in (memory, mask, state))
        target_in = tf.concat([tf.fill([tf.shape(targets)[0], 1], BOS), targets[:, :-1]], 1)
        keep = tf.not_equal(targets, PAD)
        logits = model.project(model.decode(target_in, memory, mask, state))
        token = tf.gather(tf.nn.log_softmax(logits), targets, batch_dims=2)
        return tf.reduce_sum(tf.where(keep, token, 0.0), axis=-1)


def encode_replies(tokenizer, replies, max_tokens):
    """Replies as decoder targets: pieces (cut to fit) then eos, one array each."""
    return [np.asarray([*tokenizer.encode(r)[: max_tokens - 1], EOS], np.int32) for r in replies]

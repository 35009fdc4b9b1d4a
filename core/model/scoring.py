"""How likely the model finds given replies: teacher-forced log-probabilities, batched.

Each context is encoded once; its candidate replies then run through the decoder in one
pass, each attending to its own context's encoding (gathered, not re-encoded). The whole
computation is one `tf.function`, traced once for every shape.
"""

import numpy as np
import tensorflow as tf

from core.model.tokenizer import EOS, PAD

# Reply tokens go through the output layer in groups of this many (filler rows last): a
# few shapes only, since every new shape costs the math libraries memory that they keep.
TOKEN_GROUP = 128


class Scorer(tf.Module):
    """log p(reply | context) for every (context, candidate) pair of a batch; works with
    any model that has `encode`, `decode_packed` and `output_weights` as `Seq2Seq` has."""

    def __init__(self, model):
        super().__init__(name="scorer")
        self.model = model
        matrix = tf.TensorSpec([None, None], tf.int32)
        vector = tf.TensorSpec([None], tf.int32)
        encoding = (
            tf.TensorSpec([None, None, None], tf.float32),
            tf.TensorSpec([None, None], tf.bool),
            tf.TensorSpec([None, None], tf.float32),
        )
        # Two functions: the contexts are encoded once, however many passes score replies.
        self.encode = tf.function(model.encode, input_signature=[matrix])
        self.score = tf.function(self._score, input_signature=[encoding, matrix, vector])

    def log_probs(self, source, targets, owners):
        """source [B, S]; targets [N, T] (reply + eos, padded), each answering the source
        row `owners` [N] names -> [N] summed log-probabilities."""
        return self.score(self.encode(source), targets, owners)

    def _score(self, encoding, targets, owners):
        """`log_probs` for contexts already encoded: (memory, mask, state) of `encode`."""
        model = self.model
        rows = tf.shape(targets)[0]
        # longest first, as packed decoding takes them; the results go back in order
        order = tf.argsort(
            tf.reduce_sum(tf.cast(tf.not_equal(targets, PAD), tf.int32), axis=1),
            direction="DESCENDING",
            stable=True,
        )
        targets, owners = tf.gather(targets, order), tf.gather(owners, order)
        memory, mask, state = (tf.gather(x, owners) for x in encoding)
        features, where = model.decode_packed(targets, memory, mask, state)
        # The output layer is most of the cost: only real tokens go through it, as one 2-D
        # matmul (a [N, T, E] x [E, V] product runs as N small ones, several times slower).
        real = tf.shape(features)[0]
        features = tf.pad(features, [[0, -real % TOKEN_GROUP], [0, 0]])
        weights, biases = model.output_weights()
        logits = tf.matmul(features, weights, transpose_b=True)[:real] + biases
        # log_softmax at the reply's token only: its logit less the log of the sum
        token = tf.gather(logits, tf.gather_nd(targets, where), batch_dims=1)
        token -= tf.reduce_logsumexp(logits, axis=-1)
        total = tf.math.unsorted_segment_sum(token, where[:, 0], rows)
        return tf.scatter_nd(order[:, None], total, [rows])


def encode_replies(tokenizer, replies, max_tokens):
    """Replies as decoder targets: pieces (cut to fit) then eos, one array each."""
    return [np.asarray([*tokenizer.encode(r)[: max_tokens - 1], EOS], np.int32) for r in replies]

"""Batched decoding: greedy, beam search and top-p sampling, each one graph loop.

Every method runs the whole reply inside one `tf.function` `tf.while_loop`, carrying the
decoder state from step to step. The same rules bind all three:
- pad, bos, unk and the turn separator are never generated;
- until a token with visible text is out, neither eos nor a bare word boundary may be
  chosen, so a reply is never empty;
- with `no_repeat_ngram` = n, no n-gram of tokens appears twice in one reply.
Outputs are token ids [B, max_length], padded after eos.
"""

import tensorflow as tf

from core.model.tokenizer import BOS, EOS, PAD, SEP, UNK

NEG_INF = -1e9
SAMPLE_CANDIDATES = 256


class Decoder(tf.Module):
    """Decoding functions over a built `Seq2Seq`; exportable as a SavedModel."""

    def __init__(self, model, content_mask, options, jit=False):
        """`jit` compiles each function with XLA, once per input shape: several times
        faster per token on a CPU, so callers should pad inputs to a few shapes."""
        super().__init__(name="decoder")
        source, length = tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([], tf.int32)
        real, seed = tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int32)
        compile_ = {"jit_compile": True} if jit else {}
        self.greedy = tf.function(self._greedy, input_signature=[source, length], **compile_)
        self.beam = tf.function(self._beam, input_signature=[source, length], **compile_)
        self.sample = tf.function(
            self._sample, input_signature=[source, length, real, real, seed], **compile_
        )
        self.model = model
        vocab = model.config.vocab_size
        content = tf.constant(content_mask, tf.bool)
        specials = tf.reduce_any(
            tf.one_hot([PAD, BOS, UNK, SEP], vocab, dtype=tf.int32) > 0, axis=0
        )
        self._content = content
        # Always banned, and banned until visible text has been produced.
        self._always = specials
        self._until_content = tf.logical_not(content)
        self._eos = tf.one_hot(EOS, vocab, on_value=True, off_value=False, dtype=tf.bool)
        self.vocab = vocab
        self.ngram = options.no_repeat_ngram
        self.beam_width = options.beam_width
        self.length_penalty = options.length_penalty
        self.min_length = options.min_length

    # -- shared step machinery -------------------------------------------------------------

    def _ngram_ban(self, tokens, t):
        """[B, V] bool: tokens that would repeat an n-gram already in `tokens[:, :t]`."""
        n = self.ngram
        batch = tf.shape(tokens)[0]
        width = tf.shape(tokens)[1] - (n - 1)  # number of n-gram windows in the buffer
        prefix = tokens[:, tf.maximum(t - (n - 1), 0) : tf.maximum(t, n - 1)]  # [B, n-1]
        # A window counts once its following token is written too: i + n - 1 < t.
        match = tf.tile(tf.range(width)[None, :] < t - (n - 1), [batch, 1])
        for k in range(n - 1):
            match = tf.logical_and(match, tokens[:, k : k + width] == prefix[:, k : k + 1])
        follow = tokens[:, n - 1 : n - 1 + width]
        index = tf.stack([tf.repeat(tf.range(batch), width), tf.reshape(follow, [-1])], axis=1)
        banned = tf.tensor_scatter_nd_max(
            tf.zeros([batch, self.vocab]), index, tf.reshape(tf.cast(match, tf.float32), [-1])
        )
        return tf.logical_and(banned > 0, tf.logical_not(self._eos[None, :]))

    def _log_probs(self, token, state, enc, tokens, t, has_content):
        """Next-token log-probabilities with every rule applied."""
        logits, state = self.model.step(token, state, *enc)
        log_probs = tf.nn.log_softmax(logits)
        banned = tf.logical_or(
            self._always[None, :],
            tf.logical_and(tf.logical_not(has_content)[:, None], self._until_content[None, :]),
        )
        too_short = tf.logical_and(tf.fill([1, 1], t < self.min_length), self._eos[None, :])
        banned = tf.logical_or(banned, too_short)
        if self.ngram:
            banned = tf.logical_or(banned, self._ngram_ban(tokens, t))
        return tf.where(banned, NEG_INF, log_probs), state

    def _write(self, tokens, t, column):
        return (
            tokens + tf.one_hot(t, tf.shape(tokens)[1], dtype=tf.int32)[None, :] * column[:, None]
        )

    def _buffer(self, rows, max_length):
        return tf.zeros([rows, max_length + max(self.ngram, 1)], tf.int32)

    # -- greedy and sampling ---------------------------------------------------------------

    def _search(self, source, max_length, choose):
        memory, mask, state = self.model.encode(source)
        enc = (memory, mask)
        batch = tf.shape(source)[0]
        tokens = self._buffer(batch, max_length)
        token = tf.fill([batch], BOS)
        done = tf.zeros([batch], tf.bool)
        has_content = tf.zeros([batch], tf.bool)

        def body(t, token, state, tokens, done, has_content):
            log_probs, state = self._log_probs(token, state, enc, tokens, t, has_content)
            nxt = tf.where(done, PAD, choose(log_probs, t))
            tokens = self._write(tokens, t, nxt)
            has_content = tf.logical_or(has_content, tf.gather(self._content, nxt))
            return t + 1, nxt, state, tokens, tf.logical_or(done, nxt == EOS), has_content

        def cond(t, token, state, tokens, done, has_content):
            return tf.logical_and(t < max_length, tf.logical_not(tf.reduce_all(done)))

        _, _, _, tokens, _, _ = tf.while_loop(
            cond, body, (tf.constant(0), token, state, tokens, done, has_content)
        )
        return tokens[:, :max_length]

    def _greedy(self, source, max_length):
        def choose(log_probs, t):
            return tf.argmax(log_probs, axis=-1, output_type=tf.int32)

        return self._search(source, max_length, choose)

    def _sample(self, source, max_length, temperature, top_p, seed):
        """Top-p (nucleus) sampling with temperature; the same seed gives the same replies.

        The nucleus is taken among the `SAMPLE_CANDIDATES` most likely tokens: sorting the
        whole vocabulary every step costs more than the rest of the step on a CPU.
        """
        k = min(SAMPLE_CANDIDATES, self.vocab)

        def choose(log_probs, t):
            top, ids = tf.math.top_k(log_probs / temperature, k=k)  # sorted, descending
            before = tf.cumsum(tf.nn.softmax(top), axis=-1, exclusive=True)
            # Keep a candidate while the mass before it is under top_p: the first always is.
            top = tf.where(before < top_p, top, NEG_INF)
            pick = tf.random.stateless_categorical(top, 1, seed=tf.stack([seed, t]), dtype=tf.int32)
            return tf.gather(ids, pick, batch_dims=1)[:, 0]

        return self._search(source, max_length, choose)

    def _beam(self, source, max_length):
        """Beam search; the finished beam with the best length-normalised score wins."""
        k = self.beam_width
        vocab = self.vocab
        batch = tf.shape(source)[0]
        rows = batch * k
        memory, mask, state = self.model.encode(source)
        enc = (tf.repeat(memory, k, axis=0), tf.repeat(mask, k, axis=0))
        state = tf.repeat(state, k, axis=0)
        tokens = self._buffer(rows, max_length)
        token = tf.fill([rows], BOS)
        done = tf.zeros([rows], tf.bool)
        has_content = tf.zeros([rows], tf.bool)
        lengths = tf.zeros([rows], tf.float32)
        # Only the first beam of each input is live at the start; the others are copies.
        scores = tf.tile(tf.concat([[0.0], tf.fill([k - 1], NEG_INF)], 0)[None, :], [batch, 1])
        pad_only = tf.where(tf.one_hot(PAD, vocab) > 0, 0.0, NEG_INF)
        base = tf.repeat(tf.range(batch) * k, k)

        def body(t, token, state, tokens, done, has_content, lengths, scores):
            log_probs, state = self._log_probs(token, state, enc, tokens, t, has_content)
            log_probs = tf.where(done[:, None], pad_only[None, :], log_probs)
            total = tf.reshape(scores, [batch, k, 1]) + tf.reshape(log_probs, [batch, k, vocab])
            scores, flat = tf.math.top_k(tf.reshape(total, [batch, k * vocab]), k=k)
            origin = base + tf.reshape(flat // vocab, [-1])
            nxt = tf.reshape(flat % vocab, [-1])
            state, tokens, done, has_content, lengths = (
                tf.gather(x, origin) for x in (state, tokens, done, has_content, lengths)
            )
            lengths = lengths + tf.cast(tf.logical_not(done), tf.float32)
            tokens = self._write(tokens, t, nxt)
            has_content = tf.logical_or(has_content, tf.gather(self._content, nxt))
            done = tf.logical_or(done, nxt == EOS)
            return t + 1, nxt, state, tokens, done, has_content, lengths, scores

        def cond(t, token, state, tokens, done, has_content, lengths, scores):
            return tf.logical_and(t < max_length, tf.logical_not(tf.reduce_all(done)))

        _, _, _, tokens, _, _, lengths, scores = tf.while_loop(
            cond, body, (tf.constant(0), token, state, tokens, done, has_content, lengths, scores)
        )
        penalty = tf.pow((5.0 + tf.reshape(lengths, [batch, k])) / 6.0, self.length_penalty)
        best = tf.argmax(scores / penalty, axis=-1, output_type=tf.int32)
        return tf.gather(tokens, tf.range(batch) * k + best)[:, :max_length]

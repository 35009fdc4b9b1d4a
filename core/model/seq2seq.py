"""The attention encoder-decoder.

Encoder: shared embedding -> bidirectional GRU. Decoder: GRU initialised from the encoder's
final states, then Luong ("general") attention over the encoder outputs, then
tanh(W [context; state]) projected onto the (tied) output embedding.

Attention comes after the recurrent step (no input feeding), so training runs the decoder
GRU over the whole reply in one scan and attends for all steps in one batched matmul.
"""

import keras
import numpy as np
import tensorflow as tf

from core.model.layers import ScanGRU
from core.model.tokenizer import BOS, PAD

NEG_INF = -1e9


class ArrayWeights:
    """Weights travel as {path: array}; the paths are the layers' names, stable across runs."""

    weights: list

    def weight_dict(self, dtype=np.float32):
        return {w.path: np.asarray(w.numpy(), dtype=dtype) for w in self.weights}

    def assign_weights(self, arrays):
        """Assign {path: array}; raises KeyError/ValueError naming what does not fit."""
        mine = {w.path: w for w in self.weights}
        missing = sorted(set(mine) - set(arrays))
        extra = sorted(set(arrays) - set(mine))
        if missing or extra:
            raise KeyError(f"weights missing: {missing[:3]}, unexpected: {extra[:3]}")
        for path, var in mine.items():
            value = arrays[path]
            if tuple(value.shape) != tuple(var.shape):
                raise ValueError(f"weight {path} has shape {value.shape}, expected {var.shape}")
            var.assign(value.astype(np.float32))


class Seq2Seq(ArrayWeights, keras.Model):
    def __init__(self, config, **kwargs):
        super().__init__(name="seq2seq", **kwargs)
        self.config = config
        c = config
        self.embedding = keras.layers.Embedding(c.vocab_size, c.embed_dim, name="embedding")
        self.encoder_forward = ScanGRU(c.encoder_units, name="encoder_forward")
        self.encoder_backward = ScanGRU(c.encoder_units, reverse=True, name="encoder_backward")
        self.bridge = keras.layers.Dense(c.decoder_units, activation="tanh", name="bridge")
        self.decoder_gru = ScanGRU(c.decoder_units, name="decoder_gru")
        # Luong "general" score h·W·m, with W applied to the decoder side: a reply is shorter
        # than its context, so this costs less than projecting the encoder outputs.
        self.attention_query = keras.layers.Dense(
            2 * c.encoder_units, use_bias=False, name="attention_query"
        )
        self.attentional = keras.layers.Dense(c.embed_dim, activation="tanh", name="attentional")
        self.dropout = keras.layers.Dropout(c.dropout, name="dropout")
        if c.tie_embeddings:
            self.output_bias = self.add_weight(
                shape=(c.vocab_size,), initializer="zeros", name="output_bias"
            )
        else:
            self.output_layer = keras.layers.Dense(c.vocab_size, name="output")

    def build_all(self):
        """Create every weight by running a one-token batch."""
        one = tf.ones([1, 1], tf.int32)
        self.project(self((one, one)))
        return self

    def encode(self, source, training=False):
        """source [B, S] -> (memory [B, S, 2U], mask [B, S], state [B, D])."""
        mask = tf.not_equal(source, PAD)
        x = self.dropout(self.embedding(source), training=training)
        fw, fw_last = self.encoder_forward(x, mask=mask)
        bw, bw_first = self.encoder_backward(x, mask=mask)
        memory = tf.concat([fw, bw], axis=-1)
        state = self.bridge(tf.concat([fw_last, bw_first], axis=-1))
        return memory, mask, state

    def _attend(self, h, memory, mask):
        """h [B, T, D] -> attentional features [B, T, E]."""
        scores = tf.einsum("btm,bsm->bts", self.attention_query(h), memory)
        scores = tf.where(mask[:, None, :], scores, NEG_INF)
        weights = tf.nn.softmax(scores, axis=-1)
        context = tf.einsum("bts,bsm->btm", weights, memory)
        return self.attentional(tf.concat([context, h], axis=-1))

    def call(self, inputs, training=False):
        """(source [B, S], decoder input [B, T]) -> features [B, T, E] for `project`."""
        source, target_in = inputs
        return self.decode(target_in, *self.encode(source, training), training)

    def decode(self, target_in, memory, mask, state, training=False):
        """Teacher-forced decoder input [B, T] over an encoding -> features [B, T, E]."""
        y = self.dropout(self.embedding(target_in), training=training)
        h, _ = self.decoder_gru(y, mask=tf.not_equal(target_in, PAD), initial_state=state)
        return self.dropout(self._attend(h, memory, mask), training=training)

    def decode_packed(self, targets, memory, mask, state):
        """`decode`'s features where they count, for scoring: at the real tokens of
        `targets` [N, T] (replies + eos, padded; rows sorted longest first) only, fed the
        previous token (bos first). Returns features [M, E] and each one's (row, step)
        [M, 2]. The recurrent step and the attention's dense layers never see padding, so
        a pass over replies of mixed lengths costs what their tokens do."""
        keep = tf.transpose(tf.not_equal(targets, PAD))  # [T, N]: rows start together
        steps = tf.where(keep)  # (step, row), step by step: the order scan_packed takes
        target_in = tf.concat([tf.fill([tf.shape(targets)[0], 1], BOS), targets[:, :-1]], 1)
        tokens = tf.gather_nd(tf.transpose(target_in), steps)
        active = tf.reduce_sum(tf.cast(keep, tf.int32), axis=1)
        h = self.decoder_gru.scan_packed(self.embedding(tokens), active, state)
        # Luong attention as in `_attend`; the scores on the padded grid, which is cheap
        where = tf.reverse(steps, axis=[1])  # (row, step)
        grid = tf.concat([tf.shape(targets, out_type=tf.int64), [2 * self.config.encoder_units]], 0)
        query = tf.scatter_nd(where, self.attention_query(h), grid)
        scores = tf.einsum("btm,bsm->bts", query, memory)
        scores = tf.where(mask[:, None, :], scores, NEG_INF)
        context = tf.einsum("bts,bsm->btm", tf.nn.softmax(scores, axis=-1), memory)
        context = tf.gather_nd(context, where)
        return self.attentional(tf.concat([context, h], axis=-1)), where

    def output_weights(self):
        """The output layer as (weights [V, E], biases [V])."""
        if self.config.tie_embeddings:
            return self.embedding.embeddings, self.output_bias
        return tf.transpose(self.output_layer.kernel), self.output_layer.bias

    def project(self, features):
        """Features [..., E] -> logits [..., V]."""
        weights, biases = self.output_weights()
        return tf.matmul(features, weights, transpose_b=True) + biases

    def step(self, token, state, memory, mask):
        """One decoding step: token [B], state [B, D] -> (logits [B, V], new state)."""
        state = self.decoder_gru.step(self.embedding(token), state)
        features = self._attend(state[:, None, :], memory, mask)[:, 0]
        return self.project(features), state

    def get_config(self):
        return {"config": self.config.to_dict()}

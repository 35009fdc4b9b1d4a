"""The seed documents' recipes, rebuilt as baselines for the benchmarks.

- `seed_inference`: the classic Keras LSTM encoder-decoder chatbot inference loop: one
  `predict()` call for the encoder, then one `predict()` call per generated token.
- `keras_baseline`: a straightforward Keras training set-up of parley's size: Keras GRU
  layers, every batch padded to the maximum lengths, full softmax, `model.fit`.
- `seed_lstm`: the seed documents' chatbot model, a one-layer LSTM encoder-decoder without
  attention, with the interface of parley's `Seq2Seq`, so that parley's trainer, decoder
  and evaluation run it unchanged (for the reply-quality benchmark).
"""

from __future__ import annotations

import numpy as np


def seed_inference_models(vocab: int, embed: int = 256, units: int = 256):  # type: ignore[no-untyped-def]
    """(encoder, decoder) Keras models as in the seed recipe (untrained: timing only)."""
    import keras

    enc_in = keras.Input((None,), dtype="int32")
    emb = keras.layers.Embedding(vocab, embed)
    _, h, c = keras.layers.LSTM(units, return_state=True)(emb(enc_in))
    encoder = keras.Model(enc_in, [h, c])

    dec_in = keras.Input((None,), dtype="int32")
    h_in, c_in = keras.Input((units,)), keras.Input((units,))
    lstm = keras.layers.LSTM(units, return_sequences=True, return_state=True)
    out, h_out, c_out = lstm(emb(dec_in), initial_state=[h_in, c_in])
    probs = keras.layers.Dense(vocab, activation="softmax")(out)
    decoder = keras.Model([dec_in, h_in, c_in], [probs, h_out, c_out])
    return encoder, decoder


def seed_decode(encoder, decoder, source: np.ndarray, length: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Greedy decoding the seed way: a `predict()` per token, re-entering Keras each time."""
    h, c = encoder.predict(source, verbose=0)
    token = np.full((len(source), 1), 2, np.int32)
    out = []
    for _ in range(length):
        probs, h, c = decoder.predict([token, h, c], verbose=0)
        token = probs[:, -1].argmax(-1).astype(np.int32)[:, None]
        out.append(token[:, 0])
    return np.stack(out, 1)


def keras_baseline(vocab: int, embed: int, enc_units: int, dec_units: int):  # type: ignore[no-untyped-def]
    """Bi-GRU encoder, GRU decoder, Luong dot attention, full softmax; compiled for fit()."""
    import keras

    src = keras.Input((None,), dtype="int32")
    tgt = keras.Input((None,), dtype="int32")
    emb = keras.layers.Embedding(vocab, embed, mask_zero=True)
    memory, fw, bw = keras.layers.Bidirectional(
        keras.layers.GRU(enc_units, return_sequences=True, return_state=True)
    )(emb(src))
    state = keras.layers.Dense(dec_units, activation="tanh")(keras.layers.Concatenate()([fw, bw]))
    h = keras.layers.GRU(dec_units, return_sequences=True)(emb(tgt), initial_state=state)
    query = keras.layers.Dense(2 * enc_units, use_bias=False)(h)
    context = keras.layers.Attention()([query, memory])
    features = keras.layers.Dense(embed, activation="tanh")(
        keras.layers.Concatenate()([context, h])
    )
    logits = keras.layers.Dense(vocab)(features)
    model = keras.Model([src, tgt], logits)
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
    )
    return model


SEED_UNITS = 256


def seed_lstm_config(vocab_size: int):  # type: ignore[no-untyped-def]
    """The seed model's sizes as a `ModelConfig` (full softmax, untied output layer)."""
    from core.model.config import ModelConfig

    return ModelConfig(
        vocab_size=vocab_size,
        embed_dim=SEED_UNITS,
        encoder_units=SEED_UNITS,
        decoder_units=SEED_UNITS,
        dropout=0.0,
        tie_embeddings=False,
        sampled_softmax=0,
    )


def seed_lstm(config):  # type: ignore[no-untyped-def]
    """One-layer LSTM encoder-decoder without attention; the encoder's final (h, c) starts
    the decoder. `encode`/`step`/`project` follow `Seq2Seq`; the decoder state is [h; c]."""
    import keras
    import tensorflow as tf

    from core.model.seq2seq import ArrayWeights
    from core.model.tokenizer import BOS, PAD

    class SeedLSTM(ArrayWeights, keras.Model):
        def __init__(self) -> None:
            super().__init__(name="seed_lstm")
            self.config = config
            units = config.decoder_units
            self.embedding = keras.layers.Embedding(
                config.vocab_size, config.embed_dim, name="embedding"
            )
            self.encoder = keras.layers.LSTM(units, return_state=True, name="encoder")
            self.decoder = keras.layers.LSTM(
                units, return_sequences=True, return_state=True, name="decoder"
            )
            self.output_layer = keras.layers.Dense(config.vocab_size, name="output")

        def build_all(self):  # type: ignore[no-untyped-def]
            one = tf.ones([1, 1], tf.int32)
            self.project(self((one, one)))
            return self

        def encode(self, source, training=False):  # type: ignore[no-untyped-def]
            mask = tf.not_equal(source, PAD)
            _, h, c = self.encoder(self.embedding(source), mask=mask, training=training)
            memory = tf.zeros([tf.shape(source)[0], 1, 1])  # no attention: nothing to attend to
            return memory, mask, tf.concat([h, c], axis=-1)

        def call(self, inputs, training=False):  # type: ignore[no-untyped-def]
            source, target_in = inputs
            return self.decode(target_in, *self.encode(source, training), training)

        def decode(self, target_in, memory, mask, state, training=False):  # type: ignore[no-untyped-def]
            out, _, _ = self.decoder(
                self.embedding(target_in),
                initial_state=tf.split(state, 2, axis=-1),
                mask=tf.not_equal(target_in, PAD),
                training=training,
            )
            return out

        def decode_packed(self, targets, memory, mask, state):  # type: ignore[no-untyped-def]
            """`decode` at the real tokens of `targets` only, as `Seq2Seq.decode_packed`
            returns them: features [M, E] and their (row, step) [M, 2]."""
            bos = tf.fill([tf.shape(targets)[0], 1], BOS)
            target_in = tf.concat([bos, targets[:, :-1]], 1)
            where = tf.where(tf.not_equal(targets, PAD))
            return tf.gather_nd(self.decode(target_in, memory, mask, state), where), where

        def output_weights(self):  # type: ignore[no-untyped-def]
            return tf.transpose(self.output_layer.kernel), self.output_layer.bias

        def project(self, features):  # type: ignore[no-untyped-def]
            return self.output_layer(features)

        def step(self, token, state, memory, mask):  # type: ignore[no-untyped-def]
            out, h, c = self.decoder(
                self.embedding(token)[:, None], initial_state=tf.split(state, 2, axis=-1)
            )
            return self.project(out[:, 0]), tf.concat([h, c], axis=-1)

    return SeedLSTM().build_all()

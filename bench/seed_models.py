"""The seed documents' recipes, rebuilt as baselines for the benchmarks.

- `seed_inference`: the classic Keras LSTM encoder-decoder chatbot inference loop: one
  `predict()` call for the encoder, then one `predict()` call per generated token.
- `keras_baseline`: a straightforward Keras training set-up of parley's size: Keras GRU
  layers, every batch padded to the maximum lengths, full softmax, `model.fit`.
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

"""Export the decode functions as a TensorFlow SavedModel (stock ops only).

Signatures take token ids, so TensorFlow Serving can load the directory; tokenize with the
model's `tokenizer.model` (SentencePiece) on the client side.

    greedy(source int32[B, S], max_length int32) -> ids int32[B, max_length]
    beam(source, max_length) -> ids
    sample(source, max_length, temperature float32, top_p float32, seed int32) -> ids
"""

from pathlib import Path

import tensorflow as tf

from core.model.decoding import Decoder


def export_saved_model(responder, directory):
    decoder = Decoder(responder.model, responder.tokenizer.content_mask(), responder.options)
    source = tf.TensorSpec([None, None], tf.int32, name="source")
    max_length = tf.TensorSpec([], tf.int32, name="max_length")

    @tf.function(input_signature=[source, max_length])
    def greedy(source, max_length):
        return {"ids": decoder.greedy(source, max_length)}

    @tf.function(input_signature=[source, max_length])
    def beam(source, max_length):
        return {"ids": decoder.beam(source, max_length)}

    @tf.function(
        input_signature=[
            source,
            max_length,
            tf.TensorSpec([], tf.float32, "temperature"),
            tf.TensorSpec([], tf.float32, "top_p"),
            tf.TensorSpec([], tf.int32, "seed"),
        ]
    )
    def sample(source, max_length, temperature, top_p, seed):
        return {"ids": decoder.sample(source, max_length, temperature, top_p, seed)}

    signatures = {"serving_default": beam, "greedy": greedy, "beam": beam, "sample": sample}
    tf.saved_model.save(
        decoder,
        str(Path(directory)),
        signatures={k: f.get_concrete_function() for k, f in signatures.items()},
    )

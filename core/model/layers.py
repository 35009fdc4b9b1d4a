"""A GRU that runs its input projection for all time steps at once.

Keras' GRU multiplies the input by its kernel inside the time loop. On a CPU the loop is
the bottleneck, so this layer does that matmul once over the whole sequence and leaves
only the recurrent matmul in the loop. `step` runs one time step for decoding.
"""

import keras
import tensorflow as tf


class ScanGRU(keras.layers.Layer):
    """GRU (reset gate after the recurrent matmul, as cuDNN) over a padded batch.

    Masked steps carry the previous state through, so padding never changes a result.
    """

    def __init__(self, units, reverse=False, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.units = units
        self.reverse = reverse

    def build(self, input_shape):
        dim = input_shape[-1]
        self.kernel = self.add_weight(
            shape=(dim, 3 * self.units), initializer="glorot_uniform", name="kernel"
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, 3 * self.units), initializer="orthogonal", name="recurrent_kernel"
        )
        self.bias = self.add_weight(shape=(2, 3 * self.units), initializer="zeros", name="bias")

    def _cell(self, x_proj, h):
        h_proj = tf.matmul(h, self.recurrent_kernel) + self.bias[1]
        xz, xr, xh = tf.split(x_proj, 3, axis=-1)
        hz, hr, hh = tf.split(h_proj, 3, axis=-1)
        z = tf.sigmoid(xz + hz)
        r = tf.sigmoid(xr + hr)
        return z * h + (1.0 - z) * tf.tanh(xh + r * hh)

    def call(self, x, mask=None, initial_state=None):
        """Returns (outputs [B, T, units], final state [B, units])."""
        batch = tf.shape(x)[0]
        if initial_state is None:
            initial_state = tf.zeros([batch, self.units], dtype=x.dtype)
        if mask is None:
            mask = tf.ones(tf.shape(x)[:2], dtype=tf.bool)
        x_proj = tf.einsum("btd,dg->tbg", x, self.kernel) + self.bias[0]
        mask_t = tf.transpose(mask)

        def step(h, inputs):
            xp, m = inputs
            return tf.where(m[:, None], self._cell(xp, h), h)

        states = tf.scan(step, (x_proj, mask_t), initializer=initial_state, reverse=self.reverse)
        final = states[0] if self.reverse else states[-1]
        return tf.transpose(states, [1, 0, 2]), final

    def scan_packed(self, x, active, initial_state):
        """The GRU over rows sorted longest first, given their real steps only: `x`
        [M, dim] holds step 0 of every row, then step 1 of the rows still running, and so
        on; `active` [T] says how many rows run at each step. Returns the outputs [M, units]
        in the same order. Rows of mixed lengths cost what their real steps do, not T each.
        """
        x_proj = tf.matmul(x, self.kernel) + self.bias[0]
        starts = tf.concat([[0], tf.cumsum(active)], 0)
        outputs = tf.TensorArray(x.dtype, size=tf.size(active), infer_shape=False)

        def step(t, h, outputs):
            n = active[t]
            new = self._cell(x_proj[starts[t] : starts[t] + n], h[:n])
            return t + 1, tf.concat([new, h[n:]], 0), outputs.write(t, new)

        _, _, outputs = tf.while_loop(
            lambda t, h, outputs: t < tf.size(active), step, (0, initial_state, outputs)
        )
        return tf.reshape(outputs.concat(), [-1, self.units])

    def step(self, x, h):
        """One step: input [B, dim], state [B, units] -> new state."""
        return self._cell(tf.matmul(x, self.kernel) + self.bias[0], h)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "reverse": self.reverse}

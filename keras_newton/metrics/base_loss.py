"""`BaseLoss`: the base loss, tracked while a model trains on its Newton loss."""

import keras
from keras import ops

from keras_newton.curvature.protocol import resolve_base_loss


@keras.saving.register_keras_serializable(package="keras_newton")
class BaseLoss(keras.metrics.Mean):
    """Running mean of the per-sample base loss ``l_i`` (the objective users care about).

    A `NewtonLoss` reports ``1/2 ||z* - y||^2``, whose value says little about progress;
    this metric reports the base loss itself on the same batches, weighted by
    ``sample_weight``, with ``l_i`` as `NewtonLoss` defines it (the unreduced base loss
    summed over non-batch axes).

    Args:
        base_loss: a `keras.losses.Loss`, a Keras loss name or a callable
            ``(y_true, y_pred) -> per-sample losses``.
        name: metric name, ``"base_loss"`` by default.
        dtype: metric dtype.

    Example:

    ```python
    base = keras.losses.CategoricalCrossentropy(from_logits=True)
    model.compile("adam", loss=NewtonLoss(base, "fisher"), metrics=[BaseLoss(base)])
    ```
    """

    def __init__(self, base_loss, name="base_loss", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.base_loss, self._per_sample_fn = resolve_base_loss(base_loss)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        if keras.backend.standardize_dtype(y_pred.dtype) in ("float16", "bfloat16"):
            y_pred = ops.cast(y_pred, "float32")
        values = self._per_sample_fn(y_true, y_pred)
        return super().update_state(values, sample_weight=sample_weight)

    def get_config(self):
        return {
            "base_loss": keras.saving.serialize_keras_object(self.base_loss),
            "name": self.name,
            "dtype": self.dtype,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["base_loss"] = keras.saving.deserialize_keras_object(config["base_loss"])
        return cls(**config)

"""`NewtonLoss`: one Newton step on the loss alone, then plain training on the step.

Newton losses (Petersen et al., NeurIPS 2024, arXiv 2410.19055, Section 3): with
``y = f(x; theta)``, per-sample gradients ``g_i = d l_i / d y_i`` and a curvature ``C`` of
the loss at ``y``,

    z*_i = y_i - (C + lambda I)^-1 g_i          (held constant: stop_gradient)
    newton_loss_i(y) = 1/2 ||z*_i - y_i||^2      gradient w.r.t. y_i: y_i - z*_i

and the network is trained on the Newton loss by any first-order optimizer.
"""

import keras
from keras import ops

from keras_newton import _checks
from keras_newton import curvature as curv
from keras_newton.curvature.protocol import flatten_samples

DEFAULT_TIKHONOV = 1e-2


def _is_float(dtype):
    return "float" in keras.backend.standardize_dtype(dtype)


@keras.saving.register_keras_serializable(package="keras_newton")
class NewtonLoss(keras.losses.Loss):
    """Newton loss of a base loss (Petersen et al., NeurIPS 2024, Definitions 1-3).

    For predictions ``y`` of shape ``(B, ...)``, flattened per sample to ``(B, m)``:

        z*_i = y_i - (C + tikhonov * I)^-1 g_i,     loss_i = 1/2 ||z*_i - y_i||^2

    with ``g_i`` the gradient of the per-sample base loss ``l_i`` at ``y_i`` and ``C``:

    - ``"hessian"``: ``mean_i d2 l_i / d y_i2``, one matrix for the batch (Definition 2);
    - ``"hessian_elementwise"``: ``d2 l_i / d y_i2`` per sample (Definition 1);
    - ``"fisher"``: ``mean_i g_i g_i^T``, the empirical Fisher (Definition 3);
    - ``"identity"``: ``C = I`` and no Tikhonov term, ``z* = y - g``: exactly ordinary
      training with the base loss (Theorem 2).

    ``z*`` carries no gradient, so ``d loss_i / d y_i = y_i - z*_i``: the network is
    trained by gradient descent towards the Newton step of its loss.

    The per-sample loss ``l_i`` is the base loss's *unreduced* output (a Keras `Loss` is
    evaluated through its ``call``) summed over the non-batch axes; sample ``i``'s loss must
    depend on ``y_i`` only (a set-level loss treats one set as one sample).

    Derivatives come, in order, from the base loss itself (a ``loss_derivatives`` method,
    see `keras_newton.curvature.protocol`), from the closed forms of paper Examples 1-4
    (Keras MSE, softmax cross-entropy from logits, BCE on probabilities and from logits,
    when their options match), else from automatic differentiation; for ``"hessian"``
    autodiff forms only the weighted sum of the per-sample Hessians, as the Hessian of
    ``phi(delta) = sum_i w_i l_i(y_i + delta)`` (``m`` Hessian-vector products of the batch
    loss, no ``(B, m, m)`` tensor). They are computed in
    float32 (or float64 for float64 inputs) even under mixed precision. Shared curvature
    is weighted by ``sample_weight`` and, under `tf.distribute`, summed across replicas,
    so a mirrored run gives the single-device result on the global batch. A singular or
    indefinite ``C + tikhonov I`` is inverted as a pseudo-inverse: no Newton step along
    directions with (numerically) zero curvature, so finite inputs give finite ``z*``
    (details in `keras_newton.curvature.solve`).

    Args:
        base_loss: a `keras.losses.Loss`, a Keras loss name, or a callable
            ``(y_true, y_pred) -> per-sample losses`` with a leading batch axis.
        curvature: ``"hessian"`` (default), ``"hessian_elementwise"``, ``"fisher"`` or
            ``"identity"``.
        tikhonov: ``lambda >= 0`` added to the curvature as ``lambda * I``. Defaults to
            ``1e-2``. The paper tunes it per loss between ``1e-3`` and ``1e3``; gains hold
            over several orders of magnitude. Ignored for ``"identity"``.
        reduction: Keras reduction of the per-sample Newton losses.
        name: name of the loss.
        dtype: Keras dtype of the loss computations (``None``: ``floatx``).

    Example:

    ```python
    model.compile(
        optimizer="adam",
        loss=keras_newton.NewtonLoss(
            keras.losses.CategoricalCrossentropy(from_logits=True),
            curvature="hessian", tikhonov=1e-2),
        metrics=[keras_newton.metrics.BaseLoss(
            keras.losses.CategoricalCrossentropy(from_logits=True))],
    )
    model.fit(x, y_one_hot, epochs=3)
    ```
    """

    def __init__(self, base_loss, curvature="hessian", tikhonov=DEFAULT_TIKHONOV,
                 reduction="sum_over_batch_size", name="newton_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if curvature not in curv.CURVATURES:
            raise ValueError(
                f"Unknown curvature {curvature!r}: expected one of "
                f"{', '.join(repr(c) for c in curv.CURVATURES)}."
            )
        self.curvature = curvature
        self.tikhonov = _checks.check_non_negative_float(
            "tikhonov", tikhonov, note="lambda in (C + lambda I)")
        self.base_loss, self._per_sample_fn = curv.resolve_base_loss(base_loss)
        self._sample_weight = None

    # -- the Newton step ---------------------------------------------------------------

    def target(self, y_true, y_pred, sample_weight=None):
        """The Newton target ``z*`` in the shape and dtype of ``y_pred``, no gradient.

        Args:
            y_true: targets, as the base loss takes them.
            y_pred: predictions ``(B, ...)``.
            sample_weight: optional ``(B,)`` weights of the shared curvature mean.
        """
        y_pred = ops.convert_to_tensor(y_pred)
        if y_true is not None:
            # As Keras' Loss.__call__ does: the base loss sees backend tensors.
            y_true = keras.tree.map_structure(ops.convert_to_tensor, y_true)
        z = self._target(y_true, y_pred, sample_weight)
        # Integer (or bool) predictions are computed and returned in float: a Newton step
        # is not an integer.
        dtype = y_pred.dtype if _is_float(y_pred.dtype) else z.dtype
        return ops.cast(z, dtype)

    def _target(self, y_true, y_pred, sample_weight):
        """``z*`` in the compute dtype (float32 or wider)."""
        self._check_inputs(y_true, y_pred)
        y = ops.stop_gradient(y_pred)
        if keras.backend.standardize_dtype(y.dtype) not in ("float32", "float64"):
            y = ops.cast(y, "float32")
        if y.shape[0] == 0:
            return y  # an empty batch takes an empty step (no curvature to estimate)
        need_hessian = self.curvature in ("hessian", "hessian_elementwise")
        weights = self._weights(sample_weight, y)
        # The shared Hessian needs only sum_i w_i H_i: from autodiff it comes as the
        # Hessian of one m-variable function, without per-sample Hessians.
        derivs, source = curv.loss_derivatives(
            self.base_loss, self._per_sample_fn, y_true, y, hessian=need_hessian,
            shared=self.curvature == "hessian", weights=weights,
        )
        g = ops.cast(derivs.gradient, y.dtype)
        h = None if derivs.hessian is None else ops.cast(derivs.hessian, y.dtype)
        tikhonov = 0.0 if self.curvature == "identity" else self.tikhonov
        if source == "autodiff_shared":
            step = curv.shared_hessian_step(g, h, weights, tikhonov)
        else:
            step = curv.newton_step(g, h, derivs.diagonal, self.curvature, tikhonov,
                                    weights)
        z = y - ops.reshape(step, ops.shape(y))
        return ops.stop_gradient(z)

    def _weights(self, sample_weight, y):
        """``(B,)`` weights of the curvature mean, or ``None`` (unit weights)."""
        if sample_weight is None or self.curvature in ("identity", "hessian_elementwise"):
            return None
        w = ops.cast(ops.convert_to_tensor(sample_weight), y.dtype)
        if len(w.shape) == 0:
            return None  # a scalar weight scales every sample alike: the mean is unchanged
        w = ops.reshape(w, (ops.shape(w)[0], -1))
        if w.shape[1] not in (None, 1):
            # Per-element weights: a sample weighs in with its mean element weight.
            w = ops.mean(w, axis=1, keepdims=True)
        return ops.reshape(w, (-1,))

    def _check_inputs(self, y_true, y_pred):
        if len(y_pred.shape) < 1:
            raise ValueError(
                f"y_pred must have a leading batch axis, (B, ...); received a scalar."
            )
        if y_true is None:
            return
        true_shape = getattr(y_true, "shape", None)
        if true_shape is None or len(true_shape) == 0:
            raise ValueError(
                f"y_true must have a leading batch axis matching y_pred of shape "
                f"{tuple(y_pred.shape)}; received {y_true!r}."
            )
        b_true, b_pred = true_shape[0], y_pred.shape[0]
        if b_true is not None and b_pred is not None and b_true != b_pred:
            raise ValueError(
                f"y_true and y_pred disagree on the batch size: y_true has shape "
                f"{tuple(true_shape)}, y_pred has shape {tuple(y_pred.shape)}."
            )

    # -- the Keras loss ----------------------------------------------------------------

    def __call__(self, y_true, y_pred, sample_weight=None):
        # The curvature mean is weighted like the losses: pass the weights to `call`.
        self._sample_weight = sample_weight
        try:
            loss = super().__call__(y_true, y_pred, sample_weight=sample_weight)
        finally:
            self._sample_weight = None
        if tuple(loss.shape) == (0,) and self.reduction not in (None, "none"):
            # Keras returns an empty batch's losses unreduced; a reduced loss is a scalar,
            # and the loss of no samples is 0 (as Keras gives for a batch that turns out
            # empty inside a traced function).
            loss = ops.zeros((), dtype=loss.dtype)
        return loss

    def call(self, y_true, y_pred):
        """Per-sample Newton loss ``1/2 ||z*_i - y_i||^2``, shape ``(B,)``."""
        y = ops.convert_to_tensor(y_pred)
        z = self._target(y_true, y, self._sample_weight)
        diff = flatten_samples(ops.cast(y, z.dtype) - z)
        return 0.5 * ops.sum(ops.square(diff), axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "base_loss": keras.saving.serialize_keras_object(self.base_loss),
                "curvature": self.curvature,
                "tikhonov": self.tikhonov,
                "dtype": None if self.dtype == keras.config.floatx() else self.dtype,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["base_loss"] = keras.saving.deserialize_keras_object(config["base_loss"])
        return cls(**config)

    def __repr__(self):
        return (
            f"NewtonLoss({self.base_loss!r}, curvature={self.curvature!r}, "
            f"tikhonov={self.tikhonov})"
        )

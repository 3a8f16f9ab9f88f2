"""Closed-form per-sample gradients and Hessians of Keras losses (paper Examples 1-4).

Used by `NewtonLoss` only when the Keras loss's options match the closed form exactly
(no label smoothing, class axis last, no ignored class); anything else falls back to
automatic differentiation. ``d`` below is the size of the averaged last axis (Keras' MSE
and BCE average over it), ``t`` the target, ``q = softmax(y)``, ``s = sigmoid(y)``.

| Keras loss                                   | g_i                    | Hessian of l_i            |
|----------------------------------------------|------------------------|---------------------------|
| MeanSquaredError (Example 1)                 | 2 (y - t) / d          | 2 / d (diagonal)          |
| CategoricalCrossentropy(from_logits=True)    | q sum(t) - t           | sum(t) (diag(q) - q q^T)  |
|   (Example 2; Sparse: t = one_hot(label))    |                        |                           |
| BinaryCrossentropy(from_logits=False) (Ex.3) | ((1-t)/(1-y) - t/y)/d  | (t/y^2 + (1-t)/(1-y)^2)/d |
| BinaryCrossentropy(from_logits=True) (Ex. 4) | (s - t) / d            | s (1 - s) / d (diagonal)  |

For sparse labels, Keras' own loss value is computed alongside, so that an out-of-range
label meets the base loss's own check rather than a silent zero row of ``one_hot``.

Keras clips probabilities to ``[eps, 1 - eps]`` in BCE; where a prediction lies outside,
the loss is flat and both derivatives are zero, exactly as automatic differentiation gives.
"""

import keras
from keras import ops

from keras_newton.curvature.protocol import LossDerivatives
from keras_newton.curvature.protocol import flatten_samples

_LOSSES = keras.losses


def _fn_and_options(loss):
    """The underlying loss function and its keyword options, for a Keras loss or function."""
    if isinstance(loss, keras.losses.Loss):
        return getattr(loss, "fn", None), dict(getattr(loss, "_fn_kwargs", {}) or {})
    return loss, {}


def closed_form_derivatives(loss, y_true, y_pred, hessian=True):
    """Per-sample derivatives from a closed form, or ``None`` when none applies.

    Args:
        loss: a Keras loss object or Keras loss function.
        y_true: targets, as the Keras loss takes them.
        y_pred: predictions ``(B, ...)``, float.
        hessian: whether to return the Hessian too.

    Returns:
        `LossDerivatives` with ``gradient`` ``(B, m)`` and a diagonal ``(B, m)`` or dense
        ``(B, m, m)`` Hessian, or ``None`` if the loss has no matching closed form.
    """
    fn, opts = _fn_and_options(loss)
    if fn is None:
        return None
    y_true_shape, y_pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
    if opts.get("axis", -1) not in (-1, len(y_pred_shape) - 1):
        return None
    if opts.get("label_smoothing", 0.0):
        return None
    dtype = y_pred.dtype

    if fn is _LOSSES.mean_squared_error:
        if y_true_shape != y_pred_shape or len(y_pred_shape) < 2:
            return None
        d = float(y_pred_shape[-1])
        t = ops.cast(y_true, dtype)
        g = 2.0 * (y_pred - t) / d
        h = ops.full_like(g, 2.0 / d) if hessian else None
        return LossDerivatives(flatten_samples(g), flatten_samples(h) if hessian else None,
                               diagonal=True)

    if fn is _LOSSES.binary_crossentropy:
        if y_true_shape != y_pred_shape or len(y_pred_shape) < 2:
            return None
        d = float(y_pred_shape[-1])
        t = ops.cast(y_true, dtype)
        if opts.get("from_logits", False):
            s = ops.sigmoid(y_pred)
            g = (s - t) / d
            # sigma(y) sigma(-y) = sigma(y)(1 - sigma(y)), without cancellation for y >> 0.
            h = s * ops.sigmoid(-y_pred) / d if hessian else None
        else:
            eps = keras.config.epsilon()
            inside = ops.cast(
                ops.logical_and(y_pred > eps, y_pred < 1.0 - eps), dtype
            )
            y = ops.clip(y_pred, eps, 1.0 - eps)
            g = inside * ((1.0 - t) / (1.0 - y) - t / y) / d
            h = inside * (t / y**2 + (1.0 - t) / (1.0 - y) ** 2) / d if hessian else None
        return LossDerivatives(flatten_samples(g), flatten_samples(h) if hessian else None,
                               diagonal=True)

    sparse = fn is _LOSSES.sparse_categorical_crossentropy
    if fn is _LOSSES.categorical_crossentropy or sparse:
        if not opts.get("from_logits", False) or len(y_pred_shape) != 2:
            return None
        k = y_pred_shape[-1]
        if sparse:
            if opts.get("ignore_class", None) is not None:
                return None
            if not (y_true_shape == y_pred_shape[:1] or y_true_shape == (y_pred_shape[0], 1)):
                return None
            # one_hot maps an out-of-range label to a zero row, silently. Keras' own loss
            # is evaluated first, and g made to depend on it, so that its label check runs
            # and acts as the base loss does (TensorFlow CPU, PyTorch: the error Keras
            # gives; where Keras returns NaN, g is NaN; JAX drops the sample as Keras does).
            value = fn(y_true, y_pred, **opts)
            labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
            t = ops.one_hot(labels, k, dtype=dtype)
        else:
            if y_true_shape != y_pred_shape:
                return None
            t = ops.cast(y_true, dtype)
        q = ops.softmax(y_pred, axis=-1)
        mass = ops.sum(t, axis=-1, keepdims=True)
        g = q * mass - t
        if sparse:
            g = ops.where(ops.isnan(ops.reshape(value, (-1, 1))), float("nan"), g)
        h = None
        if hessian:
            h = mass[..., None] * (
                ops.eye(k, dtype=dtype)[None] * q[:, None, :] - q[:, :, None] * q[:, None, :]
            )
        return LossDerivatives(g, h, diagonal=False)

    return None

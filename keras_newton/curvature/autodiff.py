"""The one backend-specific seam: per-sample gradients and Hessians by autodiff.

Everything else in keras-newton is written in `keras.ops`. This module computes, for a
per-sample loss ``l_i(y_i)`` (decomposable over the batch), the per-sample gradients
``g_i = d l_i / d y_i`` ``(B, m)`` and Hessians ``d2 l_i / d y_i2`` ``(B, m, m)``:

- TensorFlow: nested `tf.GradientTape`; the Hessian is the `batch_jacobian` of the
  batch gradient, vectorised with pfor (one reverse pass for all ``B * m`` rows).
- JAX: ``vmap(grad)`` and ``vmap(hessian)`` of the single-sample loss.
- PyTorch: ``torch.func.vmap`` of ``torch.func.grad`` / ``torch.func.hessian``.

It also holds `cross_replica_sum`, which sums the shared curvature across replicas under
`tf.distribute` so that a mirrored run sees the curvature of the global batch.
"""

import math

import keras

from keras_newton.curvature.protocol import LossDerivatives


def _static_size(shape):
    dims = tuple(shape[1:])
    if any(d is None for d in dims):
        return -1
    return int(math.prod(dims))


def autodiff_derivatives(per_sample_fn, y_true, y_pred, hessian=True):
    """Per-sample gradient (and Hessian) of ``per_sample_fn`` at ``y_pred`` by autodiff.

    Args:
        per_sample_fn: ``(y_true, y_pred) -> (B,)`` per-sample losses; sample ``i``'s loss
            must depend on ``y_pred[i]`` only.
        y_true: targets passed through unchanged.
        y_pred: ``(B, ...)`` float predictions. No gradient flows back into it.
        hessian: whether to compute the ``(B, m, m)`` Hessians.

    Returns:
        `LossDerivatives` with ``gradient`` ``(B, m)`` and dense ``hessian`` or ``None``.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tf_derivatives(per_sample_fn, y_true, y_pred, hessian)
    if backend == "jax":
        return _jax_derivatives(per_sample_fn, y_true, y_pred, hessian)
    if backend == "torch":
        return _torch_derivatives(per_sample_fn, y_true, y_pred, hessian)
    raise NotImplementedError(
        f"keras-newton computes autodiff curvature on the tensorflow, jax and torch "
        f"backends; the current Keras backend is {backend!r}."
    )


def _tf_derivatives(per_sample_fn, y_true, y_pred, hessian):
    import tensorflow as tf

    y = tf.stop_gradient(y_pred)
    shape = tf.shape(y)
    flat = tf.reshape(y, (shape[0], _static_size(y.shape)))
    zero = tf.UnconnectedGradients.ZERO

    def grad_of(flat_y):
        with tf.GradientTape() as inner:
            inner.watch(flat_y)
            losses = per_sample_fn(y_true, tf.reshape(flat_y, shape))
        # The batch sum's gradient is the per-sample gradient (decomposable loss).
        return inner.gradient(losses, flat_y, unconnected_gradients=zero)

    if not hessian:
        return LossDerivatives(grad_of(flat), None)
    with tf.GradientTape() as outer:
        outer.watch(flat)
        g = grad_of(flat)
    h = outer.batch_jacobian(g, flat, unconnected_gradients=zero)
    return LossDerivatives(g, h)


def _jax_derivatives(per_sample_fn, y_true, y_pred, hessian):
    import jax

    y = jax.lax.stop_gradient(y_pred)
    sample_shape = (1,) + tuple(y.shape[1:])
    flat = y.reshape((y.shape[0], -1))

    def single(flat_yi, yi_true):
        return per_sample_fn(yi_true[None], flat_yi.reshape(sample_shape))[0]

    g = jax.vmap(jax.grad(single))(flat, y_true)
    h = jax.vmap(jax.hessian(single))(flat, y_true) if hessian else None
    return LossDerivatives(g, h)


def _torch_derivatives(per_sample_fn, y_true, y_pred, hessian):
    import torch.func

    y = y_pred.detach()
    sample_shape = (1,) + tuple(y.shape[1:])
    flat = y.reshape((y.shape[0], -1))

    def single(flat_yi, yi_true):
        return per_sample_fn(yi_true[None], flat_yi.reshape(sample_shape))[0]

    g = torch.func.vmap(torch.func.grad(single))(flat, y_true)
    h = torch.func.vmap(torch.func.hessian(single))(flat, y_true) if hessian else None
    return LossDerivatives(g, h)


def num_replicas():
    """Replicas summing in `cross_replica_sum` (1 outside a `tf.distribute` replica)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    return 1 if ctx is None else ctx.num_replicas_in_sync


def cross_replica_sum(values):
    """Sums each tensor of ``values`` (a list) over the replicas of a `tf.distribute` run.

    A no-op with one replica and on JAX/PyTorch, whose Keras distribution works on the
    global batch already.
    """
    if num_replicas() == 1:
        return values
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, values)


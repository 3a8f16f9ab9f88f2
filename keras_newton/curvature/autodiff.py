"""The one backend-specific seam: per-sample gradients and Hessians by autodiff.

Everything else in keras-newton is written in `keras.ops`. This module computes, for a
per-sample loss ``l_i(y_i)`` (decomposable over the batch), the per-sample gradients
``g_i = d l_i / d y_i`` ``(B, m)`` and

- `autodiff_derivatives`: the per-sample Hessians ``d2 l_i / d y_i2`` ``(B, m, m)``
  (needed by the element-wise Hessian, Definition 1):

  - TensorFlow: nested `tf.GradientTape`; the Hessian is the `batch_jacobian` of the
    batch gradient, vectorised with pfor (one reverse pass for all ``B * m`` rows).
  - JAX: ``vmap(grad)`` and ``vmap(hessian)`` of the single-sample loss.
  - PyTorch: ``torch.func.vmap`` of ``torch.func.grad`` / ``torch.func.hessian``.

- `autodiff_shared_hessian`: only their weighted sum ``sum_i w_i d2 l_i / d y_i2``
  ``(m, m)``, all that the shared Hessian (Definition 2) needs. It is the Hessian of the
  ``m``-variable function ``phi(delta) = sum_i w_i l_i(y_i + delta)`` at ``delta = 0``
  (one shift broadcast to every sample), so no per-sample Hessian is ever formed:

  - TensorFlow: the `jacobian` of the ``m``-vector gradient of ``phi`` (reverse over
    reverse), one row at a time in a `while_loop` (``m`` Hessian-vector products of the
    batch loss); it compiles with XLA.
  - JAX: ``jax.hessian(phi)``.
  - PyTorch: ``torch.func.hessian(phi)``.

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
    return _by_backend({"tensorflow": _tf_derivatives, "jax": _jax_derivatives,
                        "torch": _torch_derivatives},
                       per_sample_fn, y_true, y_pred, hessian)


def _by_backend(functions, *args):
    """Calls the current Keras backend's entry of ``functions`` with ``args``."""
    backend = keras.backend.backend()
    if backend not in functions:
        raise NotImplementedError(
            f"keras-newton computes autodiff curvature on the tensorflow, jax and torch "
            f"backends; the current Keras backend is {backend!r}."
        )
    return functions[backend](*args)


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


def autodiff_shared_hessian(per_sample_fn, y_true, y_pred, weights=None):
    """Per-sample gradients and the weighted sum of the per-sample Hessians, by autodiff.

    The sum is the Hessian of ``phi(delta) = sum_i w_i l_i(y_i + delta)`` at
    ``delta = 0`` (``delta`` of size ``m``, the same shift for every sample): ``m``
    Hessian-vector products of the batch loss, where per-sample Hessians would take
    ``B * m`` single-sample ones and ``B * m * m`` memory.

    Args:
        per_sample_fn: ``(y_true, y_pred) -> (B,)`` per-sample losses; sample ``i``'s loss
            must depend on ``y_pred[i]`` only.
        y_true: targets passed through unchanged.
        y_pred: ``(B, ...)`` float predictions. No gradient flows back into it.
        weights: optional ``(B,)`` weights ``w_i`` (``None``: all 1).

    Returns:
        ``(gradient, hessian_sum)``: the per-sample gradients ``(B, m)`` (unweighted) and
        ``sum_i w_i d2 l_i / d y_i2`` ``(m, m)``.
    """
    return _by_backend({"tensorflow": _tf_shared_hessian, "jax": _jax_shared_hessian,
                        "torch": _torch_shared_hessian},
                       per_sample_fn, y_true, y_pred, weights)


def _tf_shared_hessian(per_sample_fn, y_true, y_pred, weights):
    import tensorflow as tf

    y = tf.stop_gradient(y_pred)
    shape = tf.shape(y)
    flat = tf.reshape(y, (shape[0], _static_size(y.shape)))
    zero = tf.UnconnectedGradients.ZERO
    delta = tf.zeros_like(flat[0])
    # Eagerly, `jacobian` without pfor loops over the rows in Python, on a persistent tape.
    with tf.GradientTape(persistent=tf.executing_eagerly()) as outer:
        outer.watch(delta)
        with tf.GradientTape() as inner:
            shifted = flat + delta
            inner.watch(shifted)
            losses = per_sample_fn(y_true, tf.reshape(shifted, shape))
        # The batch sum's gradient is the per-sample gradient (decomposable loss) ...
        g = inner.gradient(losses, shifted, unconnected_gradients=zero)
        # ... and its weighted sum over the batch the gradient of phi w.r.t. delta.
        if weights is None:
            grad_phi = tf.reduce_sum(g, axis=0)
        else:
            grad_phi = tf.linalg.matvec(g, tf.cast(weights, g.dtype), transpose_a=True)
    # One Hessian-vector product per row, in a while_loop: pfor would vectorise the rows
    # but holds every intermediate m times and cannot vectorise the second derivatives of
    # a while_loop; the loop also compiles with XLA.
    h = outer.jacobian(grad_phi, delta, unconnected_gradients=zero,
                       experimental_use_pfor=False)
    return g, h


def _jax_shared_hessian(per_sample_fn, y_true, y_pred, weights):
    import jax
    import jax.numpy as jnp

    y = jax.lax.stop_gradient(y_pred)
    flat = y.reshape((y.shape[0], -1))

    def losses_at(shifted):
        return per_sample_fn(y_true, shifted.reshape(y.shape))

    g = jax.grad(lambda f: jnp.sum(losses_at(f)))(flat)

    def phi(delta):
        losses = losses_at(flat + delta[None])
        return jnp.sum(losses) if weights is None else jnp.sum(losses * weights)

    h = jax.hessian(phi)(jnp.zeros(flat.shape[1:], flat.dtype))
    return g, h


def _torch_shared_hessian(per_sample_fn, y_true, y_pred, weights):
    import torch
    import torch.func

    y = y_pred.detach()
    flat = y.reshape((y.shape[0], -1))

    def losses_at(shifted):
        return per_sample_fn(y_true, shifted.reshape(y.shape))

    g = torch.func.grad(lambda f: losses_at(f).sum())(flat)

    def phi(delta):
        losses = losses_at(flat + delta[None])
        return losses.sum() if weights is None else (losses * weights).sum()

    h = torch.func.hessian(phi)(torch.zeros_like(flat[0]))
    return g, h


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


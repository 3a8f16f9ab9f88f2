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

import weakref

import keras
from keras import ops

from keras_newton.curvature.protocol import LossDerivatives
from keras_newton.curvature.protocol import sample_size


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


def _loss_name(per_sample_fn):
    """A readable name of the loss behind ``per_sample_fn`` for error messages."""
    name = getattr(per_sample_fn, "loss_name", None)
    if name:
        return name
    owner = getattr(per_sample_fn, "__self__", None)
    if owner is not None:
        return type(owner).__name__
    return getattr(per_sample_fn, "__name__", type(per_sample_fn).__name__)


def not_differentiable_error(per_sample_fn, detail):
    """The ``ValueError`` for a base loss without a gradient w.r.t. ``y_pred``."""
    return ValueError(
        f"base_loss {_loss_name(per_sample_fn)} is not differentiable with respect to "
        f"y_pred: {detail}. Its Newton step would be zero and training would never change "
        "the model (Keras reports this as 'No gradients provided'). Use a differentiable "
        "loss or relaxation (e.g. softmax instead of argmax, a relaxed sort instead of a "
        "hard one)."
    )


def _check_loss_dtype(per_sample_fn, losses):
    dtype = keras.backend.standardize_dtype(losses.dtype)
    if "float" not in dtype:
        raise not_differentiable_error(
            per_sample_fn, f"it returned losses of dtype {dtype}, not float")


# Signatures (y_true and y_pred shapes and dtypes) whose loss was found differentiable, per
# loss owner, so that JAX and PyTorch check a loss once per input signature.
_CHECKED = weakref.WeakKeyDictionary()


def _signature(per_sample_fn, y_true, y_pred):
    func = getattr(per_sample_fn, "__func__", per_sample_fn)
    return (id(func),) + tuple(
        (tuple(x.shape), str(x.dtype)) if hasattr(x, "shape") else (repr(x),)
        for x in (y_true, y_pred))


def _checked_once(per_sample_fn, y_true, y_pred, check):
    """Runs ``check()`` unless it already passed for this loss and input signature."""
    owner = getattr(per_sample_fn, "__self__", per_sample_fn)
    key = _signature(per_sample_fn, y_true, y_pred)
    try:
        seen = _CHECKED.setdefault(owner, set())
    except TypeError:  # not weak-referenceable: check every time
        seen = set()
    if key not in seen:
        check()
        seen.add(key)


def _jax_check_differentiable(per_sample_fn, y_true, y_pred):
    """Raises unless some tangent of ``y_pred`` reaches the losses (a jaxpr data-flow walk:
    argmax, rounding or stop_gradient give a symbolic zero tangent)."""
    import jax
    from jax.extend import core as jax_core

    def check():
        _check_loss_dtype(per_sample_fn, jax.eval_shape(per_sample_fn, y_true, y_pred))

        def tangent(yt, y, t):
            return jax.jvp(lambda v: per_sample_fn(yt, v), (y,), (t,))[1]

        jaxpr = jax.make_jaxpr(tangent)(y_true, y_pred, y_pred).jaxpr
        reached = {jaxpr.invars[-1]}
        for eqn in jaxpr.eqns:
            if any(not isinstance(v, jax_core.Literal) and v in reached for v in eqn.invars):
                reached.update(eqn.outvars)
        if not any(not isinstance(v, jax_core.Literal) and v in reached
                   for v in jaxpr.outvars):
            raise not_differentiable_error(
                per_sample_fn, "its derivative is identically zero (no gradient path)")

    _checked_once(per_sample_fn, y_true, y_pred, check)


def _torch_check_differentiable(per_sample_fn, y_true, y_pred):
    """Raises unless the losses are connected to ``y_pred`` in PyTorch's autograd graph."""
    import torch

    def check():
        with torch.enable_grad():
            y = y_pred.detach().requires_grad_(True)
            losses = per_sample_fn(y_true, y)
        _check_loss_dtype(per_sample_fn, losses)
        if not losses.requires_grad:
            raise not_differentiable_error(
                per_sample_fn, "its value carries no gradient (no autograd path)")

    _checked_once(per_sample_fn, y_true, y_pred, check)


def _tf_gradient(per_sample_fn, tape, losses, x):
    """``d sum(losses) / d x`` on ``tape``; raises if no gradient path reaches ``x``."""
    import tensorflow as tf

    _check_loss_dtype(per_sample_fn, losses)
    g = tape.gradient(losses, x, unconnected_gradients=tf.UnconnectedGradients.NONE)
    if g is None:
        raise not_differentiable_error(
            per_sample_fn, "no gradient path leads from its value back to y_pred")
    return g


def _tf_derivatives(per_sample_fn, y_true, y_pred, hessian):
    import tensorflow as tf

    y = tf.stop_gradient(y_pred)
    shape = tf.shape(y)
    flat = tf.reshape(y, (shape[0], sample_size(y)))
    zero = tf.UnconnectedGradients.ZERO

    def grad_of(flat_y):
        with tf.GradientTape() as inner:
            inner.watch(flat_y)
            losses = per_sample_fn(y_true, tf.reshape(flat_y, shape))
        # The batch sum's gradient is the per-sample gradient (decomposable loss).
        return _tf_gradient(per_sample_fn, inner, losses, flat_y)

    if not hessian:
        return LossDerivatives(grad_of(flat), None)
    with tf.GradientTape() as outer:
        outer.watch(flat)
        g = grad_of(flat)
    if flat.shape[0] is not None:
        h = outer.batch_jacobian(g, flat, unconnected_gradients=zero)
    else:
        # batch_jacobian fails on a batch that turns out empty at run time.
        m = sample_size(y)
        h = tf.cond(
            tf.shape(flat)[0] > 0,
            lambda: outer.batch_jacobian(g, flat, unconnected_gradients=zero),
            lambda: tf.zeros((0, m, m), g.dtype))
    return LossDerivatives(g, h)


def _jax_derivatives(per_sample_fn, y_true, y_pred, hessian):
    import jax

    y = jax.lax.stop_gradient(y_pred)
    _jax_check_differentiable(per_sample_fn, y_true, y)
    sample_shape = (1,) + tuple(y.shape[1:])
    flat = y.reshape((y.shape[0], -1))

    def single(flat_yi, yi_true):
        return per_sample_fn(yi_true[None], flat_yi.reshape(sample_shape))[0]

    g = jax.vmap(jax.grad(single))(flat, y_true)
    h = jax.vmap(jax.hessian(single))(flat, y_true) if hessian else None
    return LossDerivatives(g, h)


def _torch_tensors(y_true):
    """``y_true`` with every leaf a torch tensor: ``torch.func.vmap`` maps only tensors
    (a NumPy ``y_true`` fails there with "Got in_dim=0 for an input but the input is of
    type numpy.ndarray"), and a loss mixing a NumPy array with a tensor that requires
    grad fails in the differentiability check."""
    return keras.tree.map_structure(
        lambda t: None if t is None else ops.convert_to_tensor(t), y_true)


def _torch_eager(fn, *args):
    """``fn(*args)``, run eagerly when called inside ``torch.compile``.

    Keras' ``jit_compile=True`` on PyTorch compiles the train step with Dynamo, which
    cannot trace the ``torch.func`` transforms (and the autograd calls of the
    differentiability check) nested in the train step's own autograd graph ("Cannot
    access storage of TensorWrapper", "element 0 of tensors does not require grad"). A
    graph break runs them as in eager mode; the rest of the step stays compiled.
    """
    import torch

    compiler = getattr(torch, "compiler", None)
    if compiler is not None and compiler.is_compiling():
        return compiler.disable(fn, recursive=True)(*args)
    return fn(*args)


def _torch_derivatives(per_sample_fn, y_true, y_pred, hessian):
    return _torch_eager(_torch_derivatives_eager, per_sample_fn, _torch_tensors(y_true),
                        y_pred, hessian)


def _torch_derivatives_eager(per_sample_fn, y_true, y_pred, hessian):
    import torch.func

    y = y_pred.detach()
    _torch_check_differentiable(per_sample_fn, y_true, y)
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
    flat = tf.reshape(y, (shape[0], sample_size(y)))
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
        g = _tf_gradient(per_sample_fn, inner, losses, shifted)
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
    _jax_check_differentiable(per_sample_fn, y_true, y)
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
    if weights is not None:  # NumPy weights would meet a tensor that requires grad
        weights = ops.cast(ops.convert_to_tensor(weights), y_pred.dtype)
    return _torch_eager(_torch_shared_hessian_eager, per_sample_fn, _torch_tensors(y_true),
                        y_pred, weights)


def _torch_shared_hessian_eager(per_sample_fn, y_true, y_pred, weights):
    import torch
    import torch.func

    y = y_pred.detach()
    _torch_check_differentiable(per_sample_fn, y_true, y)
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


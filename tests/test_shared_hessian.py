"""The shared Hessian from autodiff without per-sample Hessians (paper Definition 2).

``sum_i w_i d2 l_i / d y_i2`` is the Hessian of ``phi(delta) = sum_i w_i l_i(y_i + delta)``
at ``delta = 0``; `autodiff_shared_hessian` computes it that way and `NewtonLoss` uses it
for ``curvature="hessian"`` when autodiff is the source. References, in float64:

- finite differences of ``phi`` itself, evaluated in NumPy (`convex_loss_np`, and
  `algovision_reference`, a NumPy replay of AlgoVision's relaxed shortest path);
- the per-sample autodiff Hessians (`autodiff_derivatives`) and the old solve through them
  (`newton_step`).

Tolerances: float64 autodiff against autodiff 1e-9 (rounding); against central finite
differences (step 1e-4, error O(h^2) + O(eps / h^2)) 1e-5 relative to the largest entry;
float32 against float64 a few 1e-4 of the scale.
"""

import os

import numpy as np
import pytest
from keras import ops

import algovision_reference as avref
import keras_newton as kn
from conftest import fd_gradient, fd_hessian, run_backend_script
from keras_newton.curvature import autodiff_derivatives, autodiff_shared_hessian, newton_step
from keras_newton.losses import PathLoss
from keras_newton.paths import RelaxedBellmanFord

HERE = os.path.dirname(os.path.abspath(__file__))
W_VEC = np.array([0.3, -0.5, 0.8, 0.2])
U_VEC = np.array([0.7, 0.1, -0.4, 0.6])
WEIGHTS = np.array([1.0, 0.0, 2.5, 0.5])  # a zero weight: that sample leaves C


def convex_loss(y_true, y_pred):
    """Non-quadratic per-sample loss coupling the entries of a sample (keras.ops)."""
    d = y_pred - y_true
    w = ops.convert_to_tensor(W_VEC, y_pred.dtype)
    u = ops.convert_to_tensor(U_VEC, y_pred.dtype)
    return (ops.sum(ops.log(ops.cosh(d)), axis=-1) + 0.1 * ops.sum(y_pred * w, axis=-1) ** 4
            + ops.softplus(ops.sum(y_pred * u, axis=-1)))


def convex_loss_np(t, y):
    """The same loss of a batch ``(B, 4)`` in NumPy: per-sample values ``(B,)``."""
    return (np.sum(np.log(np.cosh(y - t)), axis=-1) + 0.1 * (y @ W_VEC) ** 4
            + np.log1p(np.exp(y @ U_VEC)))


def convex_batch(rng):
    return rng.normal(size=(4, 4)), rng.normal(size=(4, 4))


# Relaxed Bellman-Ford on 4x4 grids: few iterations, a mild beta (moderate derivatives for
# the finite differences), the While traceback run to a fixed count (epsilon tiny), so that
# the loss is smooth in the costs.
GRID = 4
ITERATIONS = 4
BETA = 3.0


def bf_loss(kind, loop, dtype="float64"):
    """PathLoss through the layer; a Keras layer casts its inputs to its dtype."""
    layer = RelaxedBellmanFord(beta=BETA, iterations=ITERATIONS, loop=loop,
                               max_iterations=ITERATIONS, epsilon=1e-30, dtype=dtype)
    return PathLoss(kind, relaxation=layer)


def bf_loss_np(kind, loop):
    def per_sample(paths, costs):
        soft = avref.relaxed_shortest_path(costs, BETA, ITERATIONS, loop=loop,
                                           epsilon=1e-30, max_iter=ITERATIONS)
        diff = np.clip(soft, 0.0, 1.0) - paths
        per_cell = np.abs(diff) if kind == "l1" else diff**2
        return per_cell.reshape(len(costs), -1).mean(axis=1)

    return per_sample


def bf_batch(rng):
    costs = rng.uniform(0.5, 3.0, (4, GRID, GRID))
    paths = (rng.uniform(size=(4, GRID, GRID)) < 0.4).astype(np.float64)
    return paths, costs


def phi_np(loss_np, y_true, y_pred, weights):
    """``phi(delta) = sum_i w_i l_i(y_i + delta)`` of a NumPy batch loss."""
    w = np.ones(len(y_pred)) if weights is None else weights
    shape = y_pred.shape[1:]
    return lambda delta: float(np.sum(w * loss_np(y_true, y_pred + delta.reshape(shape))))


def check_shared_hessian(loss_fn, loss_np, y_true, y_pred, weights):
    """New path against finite differences of phi and against the per-sample path."""
    b = len(y_pred)
    m = int(np.prod(y_pred.shape[1:]))
    w = None if weights is None else ops.convert_to_tensor(weights)
    g, h_sum = autodiff_shared_hessian(loss_fn, y_true, y_pred, w)
    g, h_sum = ops.convert_to_numpy(g), ops.convert_to_numpy(h_sum)
    assert g.shape == (b, m) and h_sum.shape == (m, m)

    # Independent: finite differences of the NumPy phi (one shift for every sample) and
    # of each sample's NumPy loss.
    h_fd = fd_hessian(phi_np(loss_np, y_true, y_pred, weights), np.zeros(m))
    scale = np.abs(h_fd).max()
    np.testing.assert_allclose(h_sum, h_fd, rtol=0, atol=1e-5 * scale)
    for i in range(b):
        f = lambda v, i=i: float(loss_np(y_true[i:i + 1], v.reshape((1,) + y_pred.shape[1:]))[0])  # noqa: E731
        np.testing.assert_allclose(g[i], fd_gradient(f, y_pred[i].reshape(-1)), rtol=0,
                                   atol=1e-7 * max(1.0, np.abs(g).max()))

    # The old path: per-sample Hessians, then their weighted sum.
    per_sample = autodiff_derivatives(loss_fn, y_true, y_pred)
    w = np.ones(b) if weights is None else weights
    h_old = np.einsum("b,bij->ij", w, np.asarray(per_sample.hessian))
    np.testing.assert_allclose(h_sum, h_old, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(g, np.asarray(per_sample.gradient), rtol=0, atol=1e-12)
    return h_sum


@pytest.mark.parametrize("weights", [None, WEIGHTS])
def test_shared_hessian_of_a_non_quadratic_loss(rng, weights):
    y_true, y_pred = convex_batch(rng)
    check_shared_hessian(convex_loss, convex_loss_np, y_true, y_pred, weights)


@pytest.mark.parametrize("kind", ["l1", "l2"])
@pytest.mark.parametrize("loop", ["for", "while"])
def test_shared_hessian_through_relaxed_bellman_ford(rng, kind, loop):
    paths, costs = bf_batch(rng)
    loss = bf_loss(kind, loop)
    # The layer replays the reference program (checked in tests/test_paths.py too).
    np.testing.assert_allclose(np.asarray(loss.call(paths, costs)),
                               bf_loss_np(kind, loop)(paths, costs), rtol=1e-12)
    h_sum = check_shared_hessian(loss.call, bf_loss_np(kind, loop), paths, costs, WEIGHTS)
    assert np.abs(h_sum).max() > 1e-3  # a real, non-zero curvature


def reference_targets(base, y_true, y_pred, weights, tikhonov):
    """``z*`` of the old path: per-sample autodiff Hessians, weighted mean, solve."""
    _, per_sample_fn = kn.curvature.resolve_base_loss(base)
    d = autodiff_derivatives(per_sample_fn, y_true, y_pred)
    w = None if weights is None else ops.convert_to_tensor(weights, d.gradient.dtype)
    step = newton_step(d.gradient, d.hessian, False, "hessian", tikhonov, w)
    return y_pred - np.reshape(np.asarray(step), y_pred.shape)


@pytest.mark.parametrize("case", ["convex", "bf_l1", "bf_l2_while"])
def test_newton_target_equals_the_per_sample_path(rng, case):
    if case == "convex":
        (y_true, y_pred), base, base32 = convex_batch(rng), convex_loss, convex_loss
    else:
        (y_true, y_pred) = bf_batch(rng)
        kind, loop = ("l1", "for") if case == "bf_l1" else ("l2", "while")
        base, base32 = bf_loss(kind, loop), bf_loss(kind, loop, "float32")
    tikhonov = 1e-2
    for weights in (None, WEIGHTS):
        old = reference_targets(base, y_true, y_pred, weights, tikhonov)
        new = kn.NewtonLoss(base, tikhonov=tikhonov).target(y_true, y_pred, weights)
        scale = np.abs(old - y_pred).max()
        assert scale > 1e-3  # the step moves the predictions
        np.testing.assert_allclose(np.asarray(new), old, rtol=0, atol=1e-9 * scale)
        new32 = kn.NewtonLoss(base32, tikhonov=tikhonov).target(
            y_true.astype("float32"), y_pred.astype("float32"), weights)
        np.testing.assert_allclose(np.asarray(new32), old, rtol=0, atol=5e-4 * scale)


@pytest.mark.parametrize("loop", ["for", "while"])
def test_newton_target_in_graph_and_xla_matches_eager(rng, loop):
    """Relaxed Bellman-Ford (For and While) inside tf.function, with and without
    jit_compile, with sample weights: the same numbers as eagerly (float32) and as the
    float64 old path. (The While loop's second derivative used to fail to compile with
    XLA.)"""
    import tensorflow as tf

    paths, costs = bf_batch(rng)
    loss = kn.NewtonLoss(bf_loss("l1", loop, "float32"), curvature="hessian", tikhonov=1e-2)
    args = (paths.astype("float32"), costs.astype("float32"), WEIGHTS.astype("float32"))
    eager = np.asarray(loss.target(*args))
    graph = tf.function(loss.target)(*args).numpy()
    xla = tf.function(loss.target, jit_compile=True)(*args).numpy()
    old = reference_targets(bf_loss("l1", loop), paths, costs, WEIGHTS, 1e-2)
    scale = np.abs(old - costs).max()
    np.testing.assert_allclose(graph, eager, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(xla, eager, rtol=0, atol=2e-4 * scale)  # fused differently
    np.testing.assert_allclose(xla, old, rtol=0, atol=5e-4 * scale)
    assert np.abs(old - costs).max() > 1e-3  # the step moves the costs


def test_newton_loss_trains_with_xla_on_the_shared_hessian(rng):
    """One compiled training step: the Newton loss's gradient is y - z* (z* from XLA)."""
    import keras

    paths, costs = bf_batch(rng)
    x = rng.normal(size=(4, 3)).astype("float32")
    base = bf_loss("l2", "for", "float32")
    # softplus: the relaxed Bellman-Ford takes non-negative costs (negative ones are an
    # error when evaluated eagerly, as the reference target below is).
    model = keras.Sequential([keras.Input((3,)),
                              keras.layers.Dense(GRID * GRID, activation="softplus"),
                              keras.layers.Reshape((GRID, GRID))])
    model.compile("sgd", loss=kn.NewtonLoss(base, tikhonov=1e-2), jit_compile=True)
    before = model(x).numpy()
    z = np.asarray(kn.NewtonLoss(base, tikhonov=1e-2).target(paths.astype("float32"), before))
    logs = model.train_on_batch(x, paths.astype("float32"), return_dict=True)
    expected = 0.5 * np.mean(np.sum((before - z).reshape(4, -1) ** 2, axis=1))
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-3)


# -- JAX and PyTorch, each in a subprocess with its KERAS_BACKEND (conftest forces TF) --

BACKEND_SCRIPT = r"""
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
import keras
import keras_newton as kn
import test_shared_hessian as t
from keras_newton.curvature import autodiff_shared_hessian

rng = np.random.default_rng(0)
out = {{}}
cases = {{"convex": (t.convex_batch(rng), t.convex_loss),
          "bf_l1": (t.bf_batch(rng), t.bf_loss("l1", "for"))}}
for name, ((y_true, y_pred), base) in cases.items():
    w = keras.ops.convert_to_tensor(t.WEIGHTS)
    def target(yt, yp, w):
        return kn.NewtonLoss(base, curvature="hessian", tikhonov=1e-2).target(yt, yp, w)
    def shared(yt, yp, w):
        return autodiff_shared_hessian(base if name == "convex" else base.call, yt, yp, w)
    if keras.backend.backend() == "jax":
        import jax
        target, shared = jax.jit(target), jax.jit(shared)
    yt, yp = keras.ops.convert_to_tensor(y_true), keras.ops.convert_to_tensor(y_pred)
    g, h = shared(yt, yp, w)
    z = target(yt, yp, w)
    out[name] = {{"gradient": keras.ops.convert_to_numpy(g).tolist(),
                 "hessian_sum": keras.ops.convert_to_numpy(h).tolist(),
                 "target": keras.ops.convert_to_numpy(z).tolist(),
                 "dtype": str(keras.ops.convert_to_numpy(z).dtype)}}
print("RESULT" + json.dumps(out))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_agree(backend):
    result = run_backend_script(BACKEND_SCRIPT.format(tests=HERE), backend, timeout=900,
                                x64=True)

    rng = np.random.default_rng(0)
    refs = {"convex": (convex_batch(rng), convex_loss, convex_loss_np),
            "bf_l1": (bf_batch(rng), bf_loss("l1", "for"), bf_loss_np("l1", "for"))}
    for name, ((y_true, y_pred), base, loss_np) in refs.items():
        got = result[name]
        assert got["dtype"] == "float64"
        m = int(np.prod(y_pred.shape[1:]))
        h_fd = fd_hessian(phi_np(loss_np, y_true, y_pred, WEIGHTS), np.zeros(m))
        scale = np.abs(h_fd).max()
        np.testing.assert_allclose(got["hessian_sum"], h_fd, rtol=0, atol=1e-5 * scale)
        per_sample_fn = base if name == "convex" else base.call
        g_tf = np.asarray(autodiff_derivatives(per_sample_fn, y_true, y_pred).gradient)
        # 1e-6: XLA's float64 cosh on CPU (JAX) is accurate to ~1e-7 only.
        np.testing.assert_allclose(got["gradient"], g_tf, rtol=0,
                                   atol=1e-6 * np.abs(g_tf).max())
        old = reference_targets(base, y_true, y_pred, WEIGHTS, 1e-2)
        # Torch: Keras 3.15's ops.matmul returns float32 for float64 operands there, so
        # the solve (pinv_apply) is float32-accurate.
        tol = 1e-6 if backend == "jax" else 5e-4
        np.testing.assert_allclose(got["target"], old, rtol=0,
                                   atol=tol * np.abs(old - y_pred).max())

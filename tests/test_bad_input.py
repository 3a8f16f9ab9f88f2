"""Bad input gets a clear error or a defined result (first rows of the bad-input table).

- `RankingLoss` with ``y_true`` of another ``n`` than the scores: a ValueError naming both
  shapes, not a backend shape error.
- `RelaxedBellmanFord` on integer costs: computed in float, equal to the float costs' result.
- `NewtonLoss.target` on integer predictions: a float target equal to the float inputs' one.
"""

import numpy as np
import pytest

from keras_newton import NewtonLoss
from keras_newton.layers import NeuralSort, RelaxedBellmanFord
from keras_newton.losses import RankingLoss


def test_ranking_loss_names_both_shapes_when_n_differs(rng):
    loss = RankingLoss(NeuralSort())
    y_true = rng.random((4, 4)).astype("float32")
    scores = rng.random((4, 5)).astype("float32")
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        loss(y_true, scores)
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        NewtonLoss(loss, curvature="hessian").target(y_true, scores)


def test_relaxed_bellman_ford_integer_costs_are_computed_in_float(rng):
    costs = rng.integers(1, 6, size=(2, 5, 5))
    layer = RelaxedBellmanFord(beta=10.0)
    out_int = np.asarray(layer(costs))
    out_float = np.asarray(layer(costs.astype("float32")))
    assert out_int.dtype == np.float32
    np.testing.assert_allclose(out_int, out_float, rtol=0, atol=0)
    assert 0.0 < out_float.max() <= 1.0 and out_float.min() >= 0.0


def test_newton_target_of_integer_predictions_is_float(rng):
    y_true = rng.normal(size=(3, 4)).astype("float32")
    y_int = rng.integers(-3, 4, size=(3, 4)).astype("int32")
    loss = NewtonLoss("mse", curvature="hessian", tikhonov=0.5)
    z_int = np.asarray(loss.target(y_true, y_int))
    z_float = np.asarray(loss.target(y_true, y_int.astype("float32")))
    assert z_int.dtype == np.float32
    np.testing.assert_allclose(z_int, z_float, rtol=1e-6, atol=1e-6)
    # MSE over m = 4 entries: g = 2 (y - t) / m, H = 2 I / m, so
    # z* = y - (2/m + lambda)^-1 2 (y - t) / m.
    y = y_int.astype(np.float64)
    want = y - (2 * (y - y_true) / 4) / (2 / 4 + 0.5)
    np.testing.assert_allclose(z_int, want, rtol=1e-5, atol=1e-5)


# -- NaN / Inf predictions ------------------------------------------------------------------
#
# A NaN or Inf prediction must give a NaN loss (so that `TerminateOnNaN` acts), never a
# failed decomposition, eagerly, in a graph and under XLA; the element-wise kinds must leave
# the finite samples of the batch untouched.

import os  # noqa: E402

import keras  # noqa: E402
from keras import ops  # noqa: E402

from conftest import run_backend_script  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
NON_IDENTITY = ("hessian", "hessian_elementwise", "fisher")


def quartic(y_true, y_pred):
    """l_i = sum_j (y_ij - t_ij)^4: g = 4 d^3, H = diag(12 d^2), d = y - t."""
    return ops.sum((y_pred - y_true) ** 4, axis=-1)


def quartic_target_np(y_true, y_pred, curvature, tikhonov):
    """z* of `quartic` for the element-wise kinds, float64 (the closed forms above)."""
    d = np.asarray(y_pred, np.float64) - y_true
    g = 4 * d**3
    if curvature == "identity":
        return y_pred - g
    return y_pred - g / (12 * d**2 + tikhonov)


def _bad_batch(rng, bad):
    y_true = rng.normal(size=(4, 3)).astype("float32")
    y_pred = rng.normal(size=(4, 3)).astype("float32")
    y_pred[1, 2] = bad
    return y_true, y_pred


BASES = {
    "quartic (autodiff)": quartic,
    "softmax CE (closed form, dense Hessian)":
        keras.losses.CategoricalCrossentropy(from_logits=True),
}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("curvature", NON_IDENTITY)
@pytest.mark.parametrize("base", list(BASES))
@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_non_finite_prediction_gives_nan_loss_not_a_failed_decomposition(
        rng, bad, curvature, base, mode):
    import tensorflow as tf

    y_true, y_pred = _bad_batch(rng, bad)
    if base.startswith("softmax"):
        y_true = np.eye(3, dtype="float32")[rng.integers(0, 3, size=4)]
    loss = NewtonLoss(BASES[base], curvature=curvature, tikhonov=1e-2)
    fn = loss if mode == "eager" else tf.function(loss, jit_compile=mode == "xla")
    value = float(fn(y_true, y_pred))
    assert np.isnan(value)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("curvature", ["hessian_elementwise", "identity"])
def test_elementwise_kinds_keep_finite_samples_finite(rng, bad, curvature):
    y_true, y_pred = _bad_batch(rng, bad)
    z = np.asarray(NewtonLoss(quartic, curvature=curvature, tikhonov=0.5)
                   .target(y_true, y_pred))
    want = quartic_target_np(y_true, y_pred, curvature, 0.5)
    finite = np.ones(4, bool)
    finite[1] = False
    np.testing.assert_allclose(z[finite], want[finite], rtol=1e-5, atol=1e-5)
    assert not np.all(np.isfinite(z[1]))


@pytest.mark.parametrize("curvature", ["hessian", "fisher"])
def test_shared_kinds_turn_the_whole_step_nan(rng, curvature):
    # The shared curvature of a batch with a NaN sample is NaN: no sample gets a step
    # computed from it (rather than a silently partial one).
    y_true, y_pred = _bad_batch(rng, np.nan)
    z = np.asarray(NewtonLoss(quartic, curvature=curvature).target(y_true, y_pred))
    assert np.all(np.isnan(z))


@pytest.mark.parametrize("curvature", NON_IDENTITY)
@pytest.mark.parametrize("jit_compile", [False, True])
def test_terminate_on_nan_stops_fit_cleanly(rng, curvature, jit_compile):
    x = rng.normal(size=(16, 5)).astype("float32")
    x[9, 0] = np.nan  # second batch of 8
    y = rng.normal(size=(16, 3)).astype("float32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=NewtonLoss(quartic, curvature=curvature),
                  jit_compile=jit_compile)
    history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
                        callbacks=[keras.callbacks.TerminateOnNaN()])
    # Stopped in the first epoch, on the NaN batch, with a NaN loss.
    assert len(history.history["loss"]) == 1
    assert np.isnan(history.history["loss"][0])


# -- a base loss without a gradient ---------------------------------------------------------

NOT_DIFFERENTIABLE = {
    "argmax": lambda t, p: ops.cast(ops.argmax(p, axis=-1), "float32"),
    "round": lambda t, p: ops.sum(ops.round(p) - t, axis=-1),
    "integer output": lambda t, p: ops.argmax(p, axis=-1),
    "stop_gradient": lambda t, p: ops.sum(ops.stop_gradient(p) ** 2, axis=-1),
}


@pytest.mark.parametrize("kind", list(NOT_DIFFERENTIABLE))
@pytest.mark.parametrize("curvature", NON_IDENTITY + ("identity",))
def test_non_differentiable_base_loss_is_a_value_error(rng, kind, curvature):
    y_true = rng.normal(size=(4, 3)).astype("float32")
    loss = NewtonLoss(NOT_DIFFERENTIABLE[kind], curvature=curvature)
    with pytest.raises(ValueError, match="not differentiable with respect to y_pred"):
        loss(y_true, y_true + 0.5)


def test_non_differentiable_base_loss_fails_fit_at_the_first_step(rng):
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=NewtonLoss(NOT_DIFFERENTIABLE["argmax"]))
    x = rng.normal(size=(8, 5)).astype("float32")
    with pytest.raises(ValueError, match="base_loss <lambda> is not differentiable"):
        model.fit(x, x[:, :3], epochs=1, verbose=0)


def test_partly_flat_base_loss_is_accepted(rng):
    # Only a loss with no gradient path at all is rejected: one that ignores some entries
    # of y_pred gets a zero step there.
    y_true = rng.normal(size=(4, 3)).astype("float32")
    y_pred = rng.normal(size=(4, 3)).astype("float32")
    loss = NewtonLoss(lambda t, p: (p[:, 0] - t[:, 0]) ** 2, curvature="identity")
    z = np.asarray(loss.target(y_true, y_pred))
    np.testing.assert_allclose(z[:, 1:], y_pred[:, 1:], rtol=0, atol=0)
    np.testing.assert_allclose(z[:, 0], y_pred[:, 0] - 2 * (y_pred[:, 0] - y_true[:, 0]),
                               rtol=1e-6, atol=1e-6)


# -- an empty batch -------------------------------------------------------------------------

EMPTY_BASES = {
    "mse": "mse",
    "softmax CE": keras.losses.CategoricalCrossentropy(from_logits=True),
    "quartic": quartic,
}


@pytest.mark.parametrize("curvature", NON_IDENTITY + ("identity",))
@pytest.mark.parametrize("base", list(EMPTY_BASES))
@pytest.mark.parametrize("static", [True, False])
def test_empty_batch_has_loss_zero_and_an_empty_target(curvature, base, static):
    import tensorflow as tf

    loss = NewtonLoss(EMPTY_BASES[base], curvature=curvature)
    empty = np.zeros((0, 4), "float32")

    def both(t, p):
        return loss(t, p), loss.target(t, p)

    if static:
        value, z = both(empty, empty)
    else:  # a batch that turns out empty only when a traced function runs
        spec = tf.TensorSpec((None, 4), tf.float32)
        value, z = tf.function(both, input_signature=[spec, spec])(empty, empty)
    assert tuple(value.shape) == () and float(value) == 0.0
    assert tuple(z.shape) == (0, 4)


def test_empty_batch_with_no_reduction_gives_no_losses():
    loss = NewtonLoss("mse", reduction=None)
    out = loss(np.zeros((0, 4), "float32"), np.zeros((0, 4), "float32"))
    assert tuple(out.shape) == (0,)


# -- sparse labels out of range -------------------------------------------------------------

@pytest.mark.parametrize("mode", ["eager", "graph"])
@pytest.mark.parametrize("curvature", ["hessian", "fisher", "identity"])
def test_sparse_label_out_of_range_gives_the_error_keras_gives(rng, mode, curvature):
    import tensorflow as tf

    labels = np.array([1, 12, 3])
    logits = rng.normal(size=(3, 10)).astype("float32")
    base = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    newton = NewtonLoss(base, curvature=curvature)

    def run(fn):
        fn = fn if mode == "eager" else tf.function(fn)
        with pytest.raises(Exception) as info:
            fn(labels, logits)
        return info

    keras_error = run(base)
    ours = run(newton)
    assert type(ours.value) is type(keras_error.value)
    assert "label value of 12" in str(ours.value)
    assert "label value of 12" in str(keras_error.value)


def test_sparse_labels_in_range_match_the_one_hot_step(rng):
    labels = rng.integers(0, 10, size=6)
    logits = rng.normal(size=(6, 10)).astype("float32")
    sparse = NewtonLoss(keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    dense = NewtonLoss(keras.losses.CategoricalCrossentropy(from_logits=True))
    np.testing.assert_allclose(
        np.asarray(sparse.target(labels, logits)),
        np.asarray(dense.target(np.eye(10, dtype="float32")[labels], logits)),
        rtol=1e-6, atol=1e-6)


# -- the same rows on JAX and PyTorch, each in a subprocess (conftest forces TF) ------------

BACKEND_SCRIPT = r"""
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
import keras
from keras import ops
import keras_newton as kn
import test_bad_input as t

out = {{}}
rng = np.random.default_rng(0)
y_true, y_pred = t._bad_batch(rng, np.nan)
for c in ("hessian", "hessian_elementwise", "fisher", "identity"):
    loss = kn.NewtonLoss(t.quartic, curvature=c, tikhonov=0.5)
    out["nan_loss_" + c] = float(loss(y_true, y_pred))
    out["nan_target_" + c] = np.asarray(loss.target(y_true, y_pred)).tolist()
    empty = np.zeros((0, 3), "float32")
    out["empty_" + c] = [float(loss(empty, empty)),
                         list(loss.target(empty, empty).shape)]
    for kind in ("argmax", "integer output", "stop_gradient"):
        try:
            kn.NewtonLoss(t.NOT_DIFFERENTIABLE[kind], curvature=c)(y_true, y_true)
            out["nondiff_%s_%s" % (kind, c)] = "no error"
        except ValueError as e:
            out["nondiff_%s_%s" % (kind, c)] = str(e)
labels, logits = np.array([1, 12, 3]), rng.normal(size=(3, 10)).astype("float32")
base = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
for name, fn in (("keras", base), ("newton", kn.NewtonLoss(base))):
    try:
        out["scce_" + name] = float(fn(labels, logits))
    except Exception as e:
        out["scce_" + name] = type(e).__name__ + ": " + str(e)
print("RESULT" + json.dumps(out))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_handle_bad_input_alike(backend):
    got = run_backend_script(BACKEND_SCRIPT.format(tests=HERE), backend)

    y_true, y_pred = _bad_batch(np.random.default_rng(0), np.nan)
    for c in NON_IDENTITY + ("identity",):
        assert np.isnan(got["nan_loss_" + c])
        z = np.array(got["nan_target_" + c], dtype=np.float64)
        if c in ("hessian_elementwise", "identity"):
            want = quartic_target_np(y_true, y_pred, c, 0.5)
            rows = [0, 2, 3]
            np.testing.assert_allclose(z[rows], want[rows], rtol=1e-5, atol=1e-5)
        else:
            assert np.all(np.isnan(z))
        assert got["empty_" + c] == [0.0, [0, 3]]
        for kind in ("argmax", "integer output", "stop_gradient"):
            assert "not differentiable with respect to y_pred" in got[
                "nondiff_%s_%s" % (kind, c)]
    # Out-of-range sparse labels: whatever Keras' own loss does on this backend.
    if isinstance(got["scce_keras"], str):
        assert got["scce_newton"].split(":")[0] == got["scce_keras"].split(":")[0]
    else:
        assert isinstance(got["scce_newton"], float)

"""NewtonLoss inside model.fit: XLA, sample weights, distribution, mixed precision, saving."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

import keras_newton as kn
from newton_reference import reference_target

HERE = os.path.dirname(os.path.abspath(__file__))


@keras.saving.register_keras_serializable(package="keras_newton_tests")
def coupled_loss(y_true, y_pred):
    """Non-quadratic loss with a dense Hessian (autodiff path)."""
    d = y_pred - y_true
    return ops.sum(ops.log(ops.cosh(d)), axis=-1) + ops.softplus(ops.sum(y_pred, axis=-1))


def _model(seed=0, dtype=None):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="tanh", dtype=dtype),
        keras.layers.Dense(3, dtype=dtype),
    ])


def _data(rng, n=32):
    x = rng.normal(size=(n, 6)).astype("float32")
    labels = rng.integers(0, 3, size=n)
    return x, labels, np.eye(3, dtype="float32")[labels]


CASES = [
    ("closed_form", lambda: keras.losses.CategoricalCrossentropy(from_logits=True)),
    ("autodiff", lambda: coupled_loss),
]


@pytest.mark.parametrize("curvature", ["hessian", "fisher", "hessian_elementwise"])
@pytest.mark.parametrize("source,make_base", CASES)
def test_fit_with_xla_equals_fit_without(rng, curvature, source, make_base):
    x, _, y = _data(rng)
    weights = []
    for jit in (False, True):
        model = _model()
        model.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=kn.NewtonLoss(make_base(), curvature=curvature, tikhonov=0.1),
                      jit_compile=jit)
        history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        weights.append(model.get_weights())
        preds = model.predict(x, verbose=0)
        assert preds.shape == (32, 3)
    moved = max(np.abs(a - b).max() for a, b in zip(weights[0], _model().get_weights()))
    assert moved > 1e-3
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_training_step_follows_the_newton_target(rng):
    """One SGD step on the Newton loss = one SGD step on 1/2||z* - y||^2 with z* fixed."""
    import tensorflow as tf

    x, _, y = _data(rng, n=8)
    base = keras.losses.CategoricalCrossentropy(from_logits=True)
    loss = kn.NewtonLoss(base, curvature="hessian", tikhonov=0.1)
    model = _model()
    z = loss.target(y, model(x))
    with tf.GradientTape() as tape:
        manual = 0.5 * tf.reduce_sum((z - model(x)) ** 2) / 8
    grads = tape.gradient(manual, model.trainable_weights)
    expected = [w.numpy() - 0.1 * g.numpy() for w, g in zip(model.trainable_weights, grads)]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_sample_weight_excludes_zero_weight_samples_from_the_curvature(rng):
    """Weights (1, 0): same step as training on the weight-1 half with half the rate."""
    x, _, y = _data(rng, n=8)
    w = np.array([1, 0] * 4, "float32")
    results = []
    for xs, ys, ws, lr in ((x, y, w, 0.2), (x[w > 0], y[w > 0], None, 0.1)):
        model = _model()
        model.compile(optimizer=keras.optimizers.SGD(lr),
                      loss=kn.NewtonLoss(coupled_loss, curvature="hessian", tikhonov=0.05))
        model.fit(xs, ys, sample_weight=ws, batch_size=len(xs), epochs=1, shuffle=False,
                  verbose=0)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mirrored_strategy_equals_single_device():
    """2 logical CPUs: the shared curvature is all-reduced, so one step equals one device's."""
    proc = subprocess.run([sys.executable, os.path.join(HERE, "mirrored_check.py")],
                          capture_output=True, text=True, timeout=300)
    line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")]
    assert line, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(line[0][len("RESULT "):])
    assert result["replicas"] == 2
    for curvature in ("hessian", "fisher"):
        assert result[curvature + "_moved"] > 1e-2
        assert result[curvature] < 1e-5, result
    # Control: per-replica curvature (no all-reduce) gives a visibly different step.
    assert result["hessian_without_allreduce"] > 1e-2, result


def test_mixed_precision_solves_in_float32():
    """float16 logits: sigma(y)(1 - sigma(y)) ~ 6e-6 underflows float16's normal range.

    The target must match the float64 reference computed from the same float16 inputs.
    """
    y16 = np.array([[12.0, -11.0, 0.5], [10.0, 3.0, -9.0]], np.float16)
    t = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], np.float32)
    base = keras.losses.BinaryCrossentropy(from_logits=True)
    loss = kn.NewtonLoss(base, curvature="hessian_elementwise", tikhonov=0.0, reduction=None)

    s = 1 / (1 + np.exp(-y16.astype(np.float64)))
    ref = y16.astype(np.float64) - (s - t) / (s * (1 - s))  # Example 4, lambda = 0
    values = ops.convert_to_numpy(loss(t, ops.convert_to_tensor(y16)))
    expected = 0.5 * np.sum((ref - y16.astype(np.float64)) ** 2, axis=1)
    np.testing.assert_allclose(values, expected, rtol=1e-4)
    z = loss.target(t, ops.convert_to_tensor(y16))
    assert keras.backend.standardize_dtype(z.dtype) == "float16"


def test_mixed_precision_fit(rng):
    x, _, y = _data(rng)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = _model()
        model.compile(optimizer="adam",
                      loss=kn.NewtonLoss(keras.losses.CategoricalCrossentropy(from_logits=True),
                                         curvature="hessian", tikhonov=0.01))
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    finally:
        keras.config.set_dtype_policy("float32")
    assert keras.backend.standardize_dtype(model.layers[-1].compute_dtype) == "float16"
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_base_loss_metric_reports_the_base_loss(rng):
    x, labels, y = _data(rng)
    base = keras.losses.CategoricalCrossentropy(from_logits=True)
    model = _model()
    model.compile(optimizer="sgd", loss=kn.NewtonLoss(base, "fisher", tikhonov=0.1),
                  metrics=[kn.metrics.BaseLoss(base)])
    result = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    logits = model.predict(x, verbose=0).astype(np.float64)
    logq = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -np.mean(np.sum(y * logq, axis=1))
    np.testing.assert_allclose(result["base_loss"], expected, rtol=1e-5)
    # Weighted: the sample-weighted mean of per-sample losses.
    w = rng.uniform(size=32).astype("float32")
    metric = kn.metrics.BaseLoss(base)
    metric.update_state(y[:20], logits[:20].astype("float32"), sample_weight=w[:20])
    metric.update_state(y[20:], logits[20:].astype("float32"), sample_weight=w[20:])
    per_sample = -np.sum(y * logq, axis=1)
    np.testing.assert_allclose(float(metric.result()), np.sum(w * per_sample) / w.sum(),
                               rtol=1e-5)


@pytest.mark.parametrize("base", [
    keras.losses.SparseCategoricalCrossentropy(from_logits=True), "mse", coupled_loss])
def test_keras_file_round_trip_keeps_training(tmp_path, rng, base):
    x, labels, y = _data(rng)
    targets = labels if isinstance(base, keras.losses.SparseCategoricalCrossentropy) else y
    model = _model()
    loss = kn.NewtonLoss(base, curvature="fisher", tikhonov=0.3)
    model.compile(optimizer="adam", loss=loss, metrics=[kn.metrics.BaseLoss(base)])
    model.fit(x, targets, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.loss, kn.NewtonLoss)
    assert loaded.loss.get_config() == loss.get_config()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
    before = model.evaluate(x, targets, verbose=0, return_dict=True)
    after = loaded.evaluate(x, targets, verbose=0, return_dict=True)
    np.testing.assert_allclose(after["loss"], before["loss"], rtol=1e-5)
    np.testing.assert_allclose(after["base_loss"], before["base_loss"], rtol=1e-5)
    history = loaded.fit(x, targets, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_config_round_trip_reproduces_targets(rng):
    y_true, y_pred = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    loss = kn.NewtonLoss(coupled_loss, curvature="hessian_elementwise", tikhonov=0.7,
                         reduction="sum", name="nl")
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, kn.NewtonLoss)
    assert (clone.curvature, clone.tikhonov, clone.reduction, clone.name) == (
        "hessian_elementwise", 0.7, "sum", "nl")

    def coupled_np(t, v):
        return np.sum(np.log(np.cosh(v - t))) + np.log1p(np.exp(np.sum(v)))

    ref = reference_target(coupled_np, y_true, y_pred, "hessian_elementwise", 0.7)
    np.testing.assert_allclose(ops.convert_to_numpy(clone.target(y_true, y_pred)), ref,
                               rtol=1e-6)

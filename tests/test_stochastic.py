"""Sampled losses against closed-form gradients and Hessians of smoothed test functions.

Tolerances are statistical: about 5 standard errors of the estimators at the sample
counts used (stated per test).
"""

import keras
import numpy as np
import pytest
from keras import ops
from scipy.stats import norm

import keras_newton as kn
from keras_newton.losses import FenchelYoungLoss, StochasticSmoothingLoss

A_VEC = np.array([0.5, -1.0, 0.3])


@keras.saving.register_keras_serializable(package="keras_newton_tests")
def sine_quadratic(y_true, y_pred):
    """l(y) = sum sin(y - t) + (a . y)^2 / 2; smoothed: e^{-s^2/2} sum sin(y - t) + ... + c."""
    a = ops.convert_to_tensor(A_VEC, y_pred.dtype)
    return ops.sum(ops.sin(y_pred - y_true), axis=-1) + 0.5 * ops.sum(y_pred * a, -1) ** 2


@keras.saving.register_keras_serializable(package="keras_newton_tests")
def step(y):
    """A non-differentiable algorithm: 1[y > 0]. Smoothed: Phi(y / sigma)."""
    return ops.cast(y > 0, y.dtype)


@keras.saving.register_keras_serializable(package="keras_newton_tests")
def argmin_one_hot(costs):
    """Solver of min_{w in simplex vertices} <c, w>: the one-hot of the smallest cost."""
    return ops.one_hot(ops.argmin(costs, axis=-1), costs.shape[-1], dtype=costs.dtype)


Y = np.array([[0.3, -0.7, 1.1], [-1.2, 0.4, 0.0]])
T = np.array([[0.1, 0.2, -0.3], [0.5, -0.5, 0.2]])


def test_smoothing_the_loss_matches_the_smoothed_closed_form():
    sigma, samples = 0.5, 200_000
    loss = StochasticSmoothingLoss(sine_quadratic, samples=samples, sigma=sigma, seed=1)
    d = loss.loss_derivatives(T, Y, hessian=True)
    damp = np.exp(-sigma**2 / 2)
    grad = damp * np.cos(Y - T) + (Y @ A_VEC)[:, None] * A_VEC
    hess = np.stack([np.diag(-damp * np.sin(y - t)) + np.outer(A_VEC, A_VEC)
                     for y, t in zip(Y, T)])
    # Standard errors at 200k samples: ~0.004 (gradient), ~0.01 (Hessian).
    np.testing.assert_allclose(ops.convert_to_numpy(d.gradient), grad, atol=0.03)
    np.testing.assert_allclose(ops.convert_to_numpy(d.hessian), hess, atol=0.08)


def test_smoothing_the_algorithm_matches_the_chain_rule():
    """a(y) = Phi(y/sigma), J = diag(phi(y/sigma)/sigma), l = sum (a - t)^2 / 3 (Keras MSE)."""
    sigma, samples = 0.8, 100_000
    loss = StochasticSmoothingLoss(step, loss="mse", samples=samples, sigma=sigma, seed=2)
    t = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    d = loss.loss_derivatives(t, Y, hessian=False)
    a = norm.cdf(Y / sigma)
    expected = 2 * (a - t) / 3 * norm.pdf(Y / sigma) / sigma
    np.testing.assert_allclose(ops.convert_to_numpy(d.gradient), expected, atol=0.01)
    with pytest.raises(ValueError, match="fisher"):
        loss.loss_derivatives(t, Y, hessian=True)
    value = ops.convert_to_numpy(loss(t, Y))
    np.testing.assert_allclose(value, np.mean(np.mean((a - t) ** 2, 1)), atol=0.01)


def _fy_closed_form(c, sigma):
    """Two costs: y_eps = [Phi(D), 1 - Phi(D)], D = (c2 - c1) / (sigma sqrt 2)."""
    s2 = sigma * np.sqrt(2)
    dlt = (c[:, 1] - c[:, 0]) / s2
    y_eps = np.stack([norm.cdf(dlt), norm.cdf(-dlt)], 1)
    k = norm.pdf(dlt) / s2
    jac = np.stack([np.array([[-ki, ki], [ki, -ki]]) for ki in k])  # d y_eps / d c
    return y_eps, jac


def test_fenchel_young_gradient_and_hessian_signs():
    sigma, samples = 0.5, 200_000
    c = np.array([[0.2, 0.5], [1.0, 0.4], [0.0, 0.05]])
    w_true = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    fy = FenchelYoungLoss(argmin_one_hot, samples=samples, sigma=sigma, seed=3)
    d = fy.loss_derivatives(w_true, c, hessian=True)
    y_eps, jac = _fy_closed_form(c, sigma)
    np.testing.assert_allclose(ops.convert_to_numpy(d.gradient), w_true - y_eps, atol=0.01)
    hess = ops.convert_to_numpy(d.hessian)
    np.testing.assert_allclose(hess, -jac, atol=0.03)
    assert np.all(np.linalg.eigvalsh(hess) > -0.03)  # PSD for minimisation
    # The Fenchel-Young loss is non-negative, and zero only in the noiseless limit.
    values = ops.convert_to_numpy(fy(w_true, c))
    assert values > 0
    # Maximisation flips the signs.
    fy_max = FenchelYoungLoss(lambda x: argmin_one_hot(-x), samples=samples, sigma=sigma,
                              maximize=True, seed=3)
    d_max = fy_max.loss_derivatives(w_true, -c, hessian=True)
    np.testing.assert_allclose(ops.convert_to_numpy(d_max.gradient), y_eps - w_true,
                               atol=0.01)
    np.testing.assert_allclose(ops.convert_to_numpy(d_max.hessian), -jac, atol=0.03)


@pytest.mark.parametrize("make", [
    lambda seed: FenchelYoungLoss(argmin_one_hot, samples=50, sigma=0.3, seed=seed,
                                 dtype="float64"),
    lambda seed: StochasticSmoothingLoss(sine_quadratic, samples=50, sigma=0.3, seed=seed,
                                         dtype="float64"),
])
def test_plain_loss_gradient_is_the_estimate_and_newton_uses_it(make):
    import tensorflow as tf

    y_true = T if make(0).__class__ is StochasticSmoothingLoss else argmin_one_hot(
        ops.convert_to_tensor(-Y))
    y = tf.constant(Y, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(y)
        value = make(7)(y_true, y)
    grad = tape.gradient(value, y).numpy()
    d = make(7).loss_derivatives(y_true, Y, hessian=True)  # same seed: same samples
    # Keras' default reduction divides by the batch size.
    np.testing.assert_allclose(grad, ops.convert_to_numpy(d.gradient) / len(Y), rtol=1e-10)
    g, h = ops.convert_to_numpy(d.gradient), ops.convert_to_numpy(d.hessian)
    z = kn.NewtonLoss(make(7), curvature="hessian", tikhonov=0.5).target(y_true, Y)
    expected = Y - np.linalg.solve(h.mean(0) + 0.5 * np.eye(3), g.T).T
    np.testing.assert_allclose(ops.convert_to_numpy(z), expected, rtol=1e-8, atol=1e-10)
    z = kn.NewtonLoss(make(7), curvature="fisher", tikhonov=0.5).target(y_true, Y)
    fisher = np.einsum("bi,bj->ij", g, g) / len(g)
    expected = Y - np.linalg.solve(fisher + 0.5 * np.eye(3), g.T).T
    np.testing.assert_allclose(ops.convert_to_numpy(z), expected, rtol=1e-8, atol=1e-10)


def test_fenchel_young_trains_a_linear_model_to_the_true_argmin(rng):
    """Costs c = x W: training with the FY loss (as a NewtonLoss base) recovers argmin."""
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    w_true = rng.normal(size=(4, 3))
    x = rng.normal(size=(256, 4)).astype("float32")
    targets = np.eye(3, dtype="float32")[np.argmin(x @ w_true, 1)]
    accs = {}
    for name, loss in [
        ("baseline", FenchelYoungLoss(argmin_one_hot, samples=3, sigma=0.1, seed=0)),
        ("hessian", kn.NewtonLoss(FenchelYoungLoss(argmin_one_hot, samples=3, sigma=0.1,
                                                   seed=0), "hessian", tikhonov=1.0)),
        ("fisher", kn.NewtonLoss(FenchelYoungLoss(argmin_one_hot, samples=3, sigma=0.1,
                                                  seed=0), "fisher", tikhonov=1.0)),
    ]:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, use_bias=False)])
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
        # A tf.data pipeline has a dynamic batch size: the estimators must cope with it.
        data = tf.data.Dataset.from_tensor_slices((x, targets)).batch(32)
        model.fit(data, epochs=15, verbose=0)
        pred = np.argmin(model.predict(x, verbose=0), 1)
        accs[name] = np.mean(pred == np.argmin(x @ w_true, 1))
    assert min(accs.values()) > 0.9, accs


def test_sampled_losses_serialize():
    for loss in (FenchelYoungLoss(argmin_one_hot, samples=4, sigma=0.2, seed=5),
                 StochasticSmoothingLoss(step, loss="mse", samples=6, sigma=0.3, seed=1)):
        clone = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(clone) is type(loss)
        assert clone.get_config() == loss.get_config()
    nl = kn.NewtonLoss(FenchelYoungLoss(argmin_one_hot, seed=5), "fisher")
    clone = keras.losses.deserialize(keras.losses.serialize(nl))
    assert clone.base_loss.solver is argmin_one_hot


def test_sampling_arguments_are_checked():
    with pytest.raises(ValueError, match="samples"):
        FenchelYoungLoss(argmin_one_hot, samples=0)
    with pytest.raises(ValueError, match="sigma"):
        StochasticSmoothingLoss(step, sigma=-1.0)
    with pytest.raises(TypeError, match="solver"):
        FenchelYoungLoss("dijkstra")

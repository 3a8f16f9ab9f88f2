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


class RecordingArgmin:
    """``argmin_one_hot`` over the flattened sample dims, recording every input it solves."""

    def __init__(self):
        self.inputs = []

    def __call__(self, costs):
        self.inputs.append(ops.convert_to_numpy(costs))
        flat = ops.reshape(costs, (ops.shape(costs)[0], -1))
        return ops.reshape(argmin_one_hot(flat), ops.shape(costs))


def _np_one_hot_argmin(costs):
    return np.eye(costs.shape[-1])[np.argmin(costs, -1)]


@pytest.mark.parametrize("maximize", [False, True])
def test_fenchel_young_hessian_baseline_subtracts_the_unperturbed_term(maximize):
    """Both Hessian estimators from the noise the solver saw, recomputed in NumPy.

    Tolerance: rounding, 1e-12 in float64 (1e-5 where a backend computes in float32, as
    JAX does without x64).

    none:        sign * sym(mean_s w(c + sigma Z_s) Z_s^T) / sigma
    unperturbed: sign * sym(mean_s (w(c + sigma Z_s) - w(c)) Z_s^T) / sigma
    (sign = -1 minimising, +1 maximising), i.e. the plain one minus the w(c) mean(Z) term;
    with the baseline the unperturbed costs are solved in the same, single solver call.
    """
    sigma, s = 0.7, 5
    c = np.array([[[0.3, -0.2], [0.1, 0.4]], [[1.0, 0.9], [-0.5, 0.2]],
                  [[0.0, 0.05], [0.02, 0.3]]])  # (B, 2, 2): the solver sees (B, 2, 2)
    b, m = len(c), 4
    c_flat = c.reshape(b, m)
    sign = 1.0 if maximize else -1.0
    signed = (lambda w: -w) if maximize else (lambda w: w)
    hess, grads = {}, {}
    for kind in ("none", "unperturbed"):
        rec = RecordingArgmin()
        fy = FenchelYoungLoss(lambda x, rec=rec: rec(signed(x)), samples=s, sigma=sigma,
                              maximize=maximize, seed=11, hessian_baseline=kind,
                              dtype="float64")
        d = fy.loss_derivatives(np.zeros_like(c), c, hessian=True)
        assert len(rec.inputs) == 1  # one solver call
        rows = signed(rec.inputs[0]).reshape(b, -1, m)
        assert rows.shape[1] == s + (kind == "unperturbed")
        if kind == "unperturbed":
            # The last row of each item: the unperturbed costs.
            np.testing.assert_array_equal(rows[:, s], c_flat.astype(rows.dtype))
        z = (rows[:, :s] - c_flat[:, None]) / sigma
        w = _np_one_hot_argmin(signed(rows[:, :s]))
        w0 = _np_one_hot_argmin(signed(c_flat))
        if kind == "unperturbed":
            w = w - w0[:, None]
        jac = np.einsum("bsi,bsj->bij", w, z) / (s * sigma)
        expected = sign * 0.5 * (jac + jac.transpose(0, 2, 1))
        hess[kind] = ops.convert_to_numpy(d.hessian)
        grads[kind] = ops.convert_to_numpy(d.gradient)
        tol = 1e-12 if hess[kind].dtype == np.float64 else 1e-5
        np.testing.assert_allclose(hess[kind], expected, rtol=tol, atol=tol)
        if kind == "none":
            z_none = z
    # Same seed, same noise; the difference is the w(c) mean(Z)^T term, symmetrised.
    np.testing.assert_array_equal(z, z_none)
    term = np.einsum("bi,bj->bij", w0, z.mean(1)) / sigma
    np.testing.assert_allclose(hess["unperturbed"],
                               hess["none"] - sign * 0.5 * (term + term.transpose(0, 2, 1)),
                               rtol=tol, atol=tol)
    np.testing.assert_array_equal(grads["unperturbed"], grads["none"])


def test_fenchel_young_hessian_baseline_costs_no_solve_without_hessian():
    """The gradient alone (plain loss, Fisher) solves only the B * S perturbed rows."""
    rec = RecordingArgmin()
    fy = FenchelYoungLoss(rec, samples=4, sigma=0.3, seed=0, hessian_baseline="unperturbed")
    fy.loss_derivatives(np.eye(3)[[0, 1]], Y, hessian=False)
    fy(np.eye(3)[[0, 1]], Y)
    assert [x.shape for x in rec.inputs] == [(8, 3), (8, 3)]


def _simplex_jacobian(c, sigma, h=1e-5):
    """d y_eps / d c for the simplex-vertex argmin, y_eps = argmin probabilities.

    P_k(c) = P(c_k + sigma Z_k < c_j + sigma Z_j for all j != k)
           = int phi(z) prod_{j != k} (1 - Phi((c_k - c_j) / sigma + z)) dz   (quadrature),
    differentiated by central differences (error ~1e-8).
    """
    from scipy.integrate import quad

    def probs(cv):
        return np.array([quad(lambda z: norm.pdf(z) * np.prod(
            norm.sf((cv[k] - np.delete(cv, k)) / sigma + z)), -np.inf, np.inf,
            epsabs=1e-13, epsrel=1e-12)[0] for k in range(len(cv))])

    eye = np.eye(len(c))
    return np.stack([(probs(c + h * e) - probs(c - h * e)) / (2 * h) for e in eye], 1)


def test_fenchel_young_hessian_estimators_are_unbiased_for_the_same_matrix():
    """Both estimators at S = 400k against -d y_eps / d c by quadrature (4 candidates).

    Each entry of either estimate is a mean of S terms bounded in second moment by
    E[Z_j^2] / sigma^2 = 1 / sigma^2 (solution differences are in {-1, 0, 1}), so its
    standard error is at most 1 / (sigma sqrt S); tolerance: 5 of those (0.016).
    """
    sigma, s = 0.5, 400_000
    c = np.array([[0.2, 0.5, 0.3, 0.9], [1.0, 0.4, 0.6, 0.45]])
    exact = np.stack([-_simplex_jacobian(ci, sigma) for ci in c])
    np.testing.assert_allclose(exact, exact.transpose(0, 2, 1), atol=1e-6)
    tol = 5 / (sigma * np.sqrt(s))
    for kind, seed in (("none", 21), ("unperturbed", 22)):
        fy = FenchelYoungLoss(argmin_one_hot, samples=s, sigma=sigma, seed=seed,
                              hessian_baseline=kind, dtype="float64")
        d = fy.loss_derivatives(np.zeros_like(c), c, hessian=True)
        np.testing.assert_allclose(ops.convert_to_numpy(d.hessian), exact, atol=tol,
                                   err_msg=kind)


def test_fenchel_young_hessian_baseline_leaves_the_gradient_alone():
    """Same seed: identical values, gradient estimates, plain-loss gradients, Fisher steps."""
    import tensorflow as tf

    w_true = np.eye(3)[[2, 0]]
    out = {}
    for kind in ("none", "unperturbed"):
        make = lambda: FenchelYoungLoss(argmin_one_hot, samples=7, sigma=0.4, seed=3,  # noqa
                                        hessian_baseline=kind, dtype="float64")
        d = make().loss_derivatives(w_true, Y, hessian=True)
        y = tf.constant(Y, tf.float64)
        with tf.GradientTape() as tape:
            tape.watch(y)
            value = make()(w_true, y)
        fisher = kn.NewtonLoss(make(), curvature="fisher", tikhonov=0.5).target(w_true, Y)
        out[kind] = [ops.convert_to_numpy(d.gradient), value.numpy(),
                     tape.gradient(value, y).numpy(), ops.convert_to_numpy(fisher)]
    for a, b in zip(out["none"], out["unperturbed"]):
        np.testing.assert_array_equal(a, b)


def test_sampled_losses_serialize():
    for loss in (FenchelYoungLoss(argmin_one_hot, samples=4, sigma=0.2, seed=5),
                 StochasticSmoothingLoss(step, loss="mse", samples=6, sigma=0.3, seed=1)):
        clone = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(clone) is type(loss)
        assert clone.get_config() == loss.get_config()
    assert FenchelYoungLoss(argmin_one_hot).hessian_baseline == "unperturbed"  # default
    plain = FenchelYoungLoss(argmin_one_hot, seed=5, hessian_baseline="none")
    clone = keras.losses.deserialize(keras.losses.serialize(plain))
    assert clone.hessian_baseline == "none"
    assert clone.get_config() == plain.get_config()
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
    for bad in ("mean", None, "Unperturbed"):
        with pytest.raises(ValueError, match="hessian_baseline"):
            FenchelYoungLoss(argmin_one_hot, hessian_baseline=bad)

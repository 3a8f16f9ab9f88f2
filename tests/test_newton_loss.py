"""NewtonLoss against float64 references computed another way (paper Section 3)."""

import numpy as np
import keras
import pytest
from keras import ops

import keras_newton as kn
from keras_newton.curvature import autodiff_derivatives, closed_form_derivatives, newton_step
from keras_newton.curvature import LossDerivatives
from newton_reference import reference_target

M = 4
W_VEC = np.array([0.3, -0.5, 0.8, 0.2])
U_VEC = np.array([0.7, 0.1, -0.4, 0.6])


def convex_loss(y_true, y_pred):
    """Non-quadratic, strictly convex, coupled per-sample loss (keras.ops)."""
    d = y_pred - y_true
    w = ops.convert_to_tensor(W_VEC, y_pred.dtype)
    u = ops.convert_to_tensor(U_VEC, y_pred.dtype)
    return (
        ops.sum(ops.log(ops.cosh(d)), axis=-1)
        + 0.1 * ops.sum(y_pred * w, axis=-1) ** 4
        + ops.softplus(ops.sum(y_pred * u, axis=-1))
    )


def convex_loss_np(t, y):
    d = y - t
    return (
        np.sum(np.log(np.cosh(d)))
        + 0.1 * np.dot(y, W_VEC) ** 4
        + np.log1p(np.exp(np.dot(y, U_VEC)))
    )


@pytest.fixture
def batch(rng):
    y_true = rng.normal(size=(6, M))
    y_pred = rng.normal(size=(6, M))
    return y_true, y_pred


@pytest.mark.parametrize("curvature", ["hessian", "hessian_elementwise", "fisher", "identity"])
@pytest.mark.parametrize("tikhonov", [0.0, 0.1, 3.0])
def test_target_matches_float64_finite_differences(batch, curvature, tikhonov):
    y_true, y_pred = batch
    if curvature == "fisher" and tikhonov == 0.0:
        tikhonov = 1e-3  # the Fisher of 6 samples in 4 dims is regular, but barely
    ref = reference_target(convex_loss_np, y_true, y_pred, curvature, tikhonov)
    loss = kn.NewtonLoss(convex_loss, curvature=curvature, tikhonov=tikhonov)
    z32 = loss.target(y_true.astype("float32"), y_pred.astype("float32"))
    z64 = loss.target(y_true, y_pred)  # float64 inputs are solved in float64
    np.testing.assert_allclose(ops.convert_to_numpy(z64), ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(z32), ref, rtol=2e-3, atol=2e-3)


def test_loss_value_is_half_squared_distance_to_target(batch):
    y_true, y_pred = batch
    loss = kn.NewtonLoss(convex_loss, curvature="hessian", tikhonov=0.1, reduction=None,
                         dtype="float64")
    ref = reference_target(convex_loss_np, y_true, y_pred, "hessian", 0.1)
    expected = 0.5 * np.sum((ref - y_pred) ** 2, axis=1)
    np.testing.assert_allclose(ops.convert_to_numpy(loss(y_true, y_pred)), expected, rtol=1e-6)


def test_sample_weight_weights_the_shared_curvature(batch):
    y_true, y_pred = batch
    w = np.array([1.0, 0.0, 2.0, 0.5, 1.0, 3.0])
    for curvature in ("hessian", "fisher"):
        ref = reference_target(convex_loss_np, y_true, y_pred, curvature, 0.05, weights=w)
        loss = kn.NewtonLoss(convex_loss, curvature=curvature, tikhonov=0.05, reduction=None,
                             dtype="float64")
        z = loss.target(y_true, y_pred, sample_weight=w)
        np.testing.assert_allclose(ops.convert_to_numpy(z), ref, rtol=1e-6, atol=1e-6)
        values = ops.convert_to_numpy(loss(y_true, y_pred, sample_weight=w))
        np.testing.assert_allclose(values, w * 0.5 * np.sum((ref - y_pred) ** 2, 1), rtol=1e-6)


def test_multi_axis_predictions_flatten_per_sample(rng):
    y_true = rng.normal(size=(3, 2, 2))
    y_pred = rng.normal(size=(3, 2, 2))

    def loss_np(t, y):
        return convex_loss_np(t.reshape(-1), y.reshape(-1))

    def loss_k(t, y):
        return convex_loss(ops.reshape(t, (-1, M)), ops.reshape(y, (-1, M)))

    ref = reference_target(loss_np, y_true, y_pred, "hessian", 0.2)
    z = kn.NewtonLoss(loss_k, curvature="hessian", tikhonov=0.2).target(y_true, y_pred)
    assert tuple(z.shape) == (3, 2, 2)
    np.testing.assert_allclose(ops.convert_to_numpy(z), ref, rtol=1e-6, atol=1e-6)


# -- closed forms (paper Examples 1-4) -------------------------------------------------

def _closed_form_cases(rng):
    logits = rng.normal(size=(5, 4)) * 2
    one_hot = np.eye(4)[rng.integers(0, 4, size=5)]
    soft = rng.dirichlet(np.ones(4), size=5)
    probs = rng.uniform(0.05, 0.95, size=(5, 3))
    bits = rng.integers(0, 2, size=(5, 3)).astype(float)
    return [
        (keras.losses.MeanSquaredError(), rng.normal(size=(5, 3)), rng.normal(size=(5, 3))),
        ("mse", rng.normal(size=(5, 2, 3)), rng.normal(size=(5, 2, 3))),
        (keras.losses.CategoricalCrossentropy(from_logits=True), one_hot, logits),
        (keras.losses.CategoricalCrossentropy(from_logits=True), soft, logits),
        (keras.losses.SparseCategoricalCrossentropy(from_logits=True),
         np.argmax(one_hot, 1), logits),
        (keras.losses.BinaryCrossentropy(), bits, probs),
        ("binary_crossentropy", rng.uniform(size=(5, 3)), probs),
        (keras.losses.BinaryCrossentropy(from_logits=True), bits, logits[:, :3]),
    ]


def test_closed_forms_equal_autodiff(rng):
    for base, y_true, y_pred in _closed_form_cases(rng):
        obj, per_sample = kn.curvature.resolve_base_loss(base)
        yt, yp = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
        closed = closed_form_derivatives(obj, yt, yp)
        assert closed is not None, base
        auto = autodiff_derivatives(per_sample, yt, yp)
        h_closed = ops.convert_to_numpy(closed.hessian)
        if closed.diagonal:
            h_closed = np.stack([np.diag(d) for d in h_closed])
        np.testing.assert_allclose(
            ops.convert_to_numpy(closed.gradient), ops.convert_to_numpy(auto.gradient),
            rtol=1e-8, atol=1e-10, err_msg=str(base))
        np.testing.assert_allclose(h_closed, ops.convert_to_numpy(auto.hessian),
                                   rtol=1e-8, atol=1e-10, err_msg=str(base))


def test_closed_form_matches_paper_example_2_softmax(rng):
    """Example 2: z*_H = y - (E[diag(q) - q q^T] + lambda I)^-1 (q - p)."""
    y = rng.normal(size=(8, 5))
    p = np.eye(5)[rng.integers(0, 5, size=8)]
    q = np.exp(y) / np.exp(y).sum(1, keepdims=True)
    h = np.mean([np.diag(qi) - np.outer(qi, qi) for qi in q], axis=0)
    expected = y - np.linalg.solve(h + 0.1 * np.eye(5), (q - p).T).T
    loss = kn.NewtonLoss(keras.losses.CategoricalCrossentropy(from_logits=True), tikhonov=0.1)
    np.testing.assert_allclose(ops.convert_to_numpy(loss.target(p, y)), expected, rtol=1e-8)


def test_closed_form_softmax_with_unnormalised_targets_is_exact(rng):
    """l = -sum t log softmax(y) for targets of mass 1.5: g = 1.5 q - t (finite differences).

    TensorFlow's fused softmax cross-entropy gradient assumes targets of unit mass, so
    autodiff would give q - t here; the closed form is the derivative of the loss itself.
    """
    y = rng.normal(size=(4, 3))
    t = rng.dirichlet(np.ones(3), size=4) * 1.5

    def cce_np(ti, v):
        return -np.sum(ti * (v - np.log(np.sum(np.exp(v)))))

    ref = reference_target(cce_np, t, y, "hessian", 0.1)
    loss = kn.NewtonLoss(keras.losses.CategoricalCrossentropy(from_logits=True), tikhonov=0.1)
    np.testing.assert_allclose(ops.convert_to_numpy(loss.target(t, y)), ref, rtol=1e-6)


def test_closed_form_matches_paper_example_4_sigmoid_bce(rng):
    """Example 4: z*_E = y - (sigma(y) - p) / (sigma(y)(1 - sigma(y)) + lambda), per element."""
    y = rng.normal(size=(6, 1))
    p = rng.integers(0, 2, size=(6, 1)).astype(float)
    s = 1 / (1 + np.exp(-y))
    expected = y - (s - p) / (s * (1 - s) + 0.01)
    loss = kn.NewtonLoss(keras.losses.BinaryCrossentropy(from_logits=True),
                         curvature="hessian_elementwise", tikhonov=0.01)
    np.testing.assert_allclose(ops.convert_to_numpy(loss.target(p, y)), expected, rtol=1e-8)


def test_options_without_closed_form_fall_back_to_autodiff(rng):
    y = rng.normal(size=(4, 3))
    p = np.eye(3)[[0, 1, 2, 0]]
    smoothed = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2)
    assert closed_form_derivatives(smoothed, ops.convert_to_tensor(p),
                                   ops.convert_to_tensor(y)) is None

    def smoothed_np(t, v):
        t = t * 0.8 + 0.2 / 3
        return -np.sum(t * (v - np.log(np.sum(np.exp(v)))))

    ref = reference_target(smoothed_np, p, y, "hessian", 0.1)
    z = kn.NewtonLoss(smoothed, tikhonov=0.1).target(p, y)
    np.testing.assert_allclose(ops.convert_to_numpy(z), ref, rtol=1e-6, atol=1e-7)


def test_mse_newton_target_is_the_ground_truth(rng):
    """Example 1: for MSE, z* = y_true, so the Newton loss is the (half, rescaled) MSE."""
    y_true, y_pred = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    for curvature in ("hessian", "hessian_elementwise"):
        loss = kn.NewtonLoss("mse", curvature=curvature, tikhonov=0.0, reduction=None,
                             dtype="float64")
        np.testing.assert_allclose(ops.convert_to_numpy(loss.target(y_true, y_pred)), y_true,
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ops.convert_to_numpy(loss(y_true, y_pred)),
                                   0.5 * np.sum((y_true - y_pred) ** 2, 1), rtol=1e-12)


# -- the provider protocol ----------------------------------------------------------------

class Quartic(keras.losses.Loss):
    """Toy provider: l_i = sum (y - t)^4 / 4 with hand-written derivatives."""

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale
        self.calls = 0

    def call(self, y_true, y_pred):
        return ops.sum((y_pred - y_true) ** 4, axis=-1) / 4

    def loss_derivatives(self, y_true, y_pred, hessian):
        self.calls += 1
        d = y_pred - y_true
        # Deliberately scaled, so the test can see these derivatives were used.
        return LossDerivatives(self.scale * d**3,
                               self.scale * 3 * d**2 if hessian else None, diagonal=True)


def test_provider_derivatives_take_precedence(rng):
    y_true, y_pred = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    provider = Quartic(scale=2.0)
    z = kn.NewtonLoss(provider, curvature="hessian_elementwise", tikhonov=0.5).target(
        y_true, y_pred)
    d = y_pred - y_true
    expected = y_pred - 2 * d**3 / (2 * 3 * d**2 + 0.5)
    np.testing.assert_allclose(ops.convert_to_numpy(z), expected, rtol=1e-10)
    assert provider.calls == 1
    # scale=1 derivatives agree with autodiff of `call` (the protocol's contract).
    true_quartic = lambda t, y: np.sum((y - t) ** 4) / 4  # noqa: E731
    ref = reference_target(true_quartic, y_true, y_pred, "hessian", 0.5)
    z = kn.NewtonLoss(Quartic(), curvature="hessian", tikhonov=0.5).target(y_true, y_pred)
    np.testing.assert_allclose(ops.convert_to_numpy(z), ref, rtol=1e-6)


def test_provider_without_hessian_is_rejected_for_hessian_kinds(rng):
    class GradOnly(Quartic):
        def loss_derivatives(self, y_true, y_pred, hessian):
            return LossDerivatives(y_pred - y_true)

    y = rng.normal(size=(3, 2))
    with pytest.raises(ValueError, match="Hessian"):
        kn.NewtonLoss(GradOnly(), curvature="hessian").target(y, y)
    # The Fisher needs only gradients.
    z = kn.NewtonLoss(GradOnly(), curvature="fisher", tikhonov=1.0).target(y, y)
    np.testing.assert_allclose(ops.convert_to_numpy(z), y)


# -- Theorems 2 and 3 -------------------------------------------------------------------

def _param_grads(model, loss, x, y):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        value = loss(y, model(x))
    return [g.numpy() for g in tape.gradient(value, model.trainable_weights)]


def test_identity_curvature_gives_the_base_loss_parameter_gradient(rng):
    """Theorem 2: a unit z-step then a theta-step equals a gradient step of l(f(x))."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(3)])
    x = rng.normal(size=(16, 5)).astype("float32")
    labels = rng.integers(0, 3, size=16)
    base = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    g_base = _param_grads(model, base, x, labels)
    g_newton = _param_grads(model, kn.NewtonLoss(base, curvature="identity"), x, labels)
    for a, b in zip(g_base, g_newton):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


def test_newton_step_equality_for_scalar_output(rng):
    """Theorem 3 (m = 1): Newton on z then Newton on theta equals Newton on theta.

    Model f(x; theta) = theta * x with one parameter; one sample; loss l(y) = log cosh(y - t)
    + y^4 / 10. Newton on theta: theta - l'(f) x / (l''(f) x^2). Two-stage: z* = f - l'/l'',
    then a Newton step on 1/2 (z* - theta x)^2: theta - (theta x - z*) x / x^2.
    """
    import tensorflow as tf

    def base(t, y):
        return ops.sum(ops.log(ops.cosh(y - t)) + y**4 / 10, axis=-1)

    for theta0, x0, t0 in [(0.7, 1.3, -0.4), (-1.2, 0.5, 2.0), (0.3, -2.0, 0.1)]:
        x = tf.constant([[x0]], tf.float64)
        t = tf.constant([[t0]], tf.float64)
        theta = tf.Variable(theta0, dtype=tf.float64)
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                value = base(t, theta * x)[0]
            grad = inner.gradient(value, theta)
        hess = outer.gradient(grad, theta)
        newton_full = theta0 - float(grad) / float(hess)

        z = kn.NewtonLoss(base, curvature="hessian", tikhonov=0.0).target(t, theta * x)
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                surrogate = 0.5 * tf.reduce_sum((z - theta * x) ** 2)
            grad2 = inner.gradient(surrogate, theta)
        hess2 = outer.gradient(grad2, theta)
        newton_two_stage = theta0 - float(grad2) / float(hess2)
        np.testing.assert_allclose(newton_two_stage, newton_full, rtol=1e-10)


# -- solve: singular, indefinite, Woodbury ----------------------------------------------------

def test_singular_and_indefinite_curvature_stay_finite(rng):
    g = rng.normal(size=(4, 3))
    # Singular: zero Hessian (a linear loss) with lambda = 0 gives no Newton step.
    step = newton_step(ops.convert_to_tensor(g), ops.zeros((4, 3, 3), "float64"),
                       curvature="hessian", tikhonov=0.0)
    np.testing.assert_array_equal(ops.convert_to_numpy(step), 0.0)
    # Rank-deficient: the step is the pseudo-inverse (least-norm) solution.
    h = np.diag([2.0, 1.0, 0.0])
    step = newton_step(ops.convert_to_tensor(g), ops.convert_to_tensor(np.stack([h] * 4)),
                       curvature="hessian", tikhonov=0.0)
    np.testing.assert_allclose(ops.convert_to_numpy(step), g @ np.linalg.pinv(h), atol=1e-12)
    # Indefinite but regular: exactly the paper's step (C + lambda I)^-1 g.
    h = np.array([[1.0, 2.0, 0.0], [2.0, -1.0, 0.5], [0.0, 0.5, -3.0]])
    step = newton_step(ops.convert_to_tensor(g), ops.convert_to_tensor(np.stack([h] * 4)),
                       curvature="hessian", tikhonov=0.1)
    np.testing.assert_allclose(ops.convert_to_numpy(step),
                               np.linalg.solve(h + 0.1 * np.eye(3), g.T).T, rtol=1e-10)
    # Indefinite and exactly singular (eigenvalue -lambda): finite, pinv in float32 too.
    h32 = np.diag([1.0, -0.5, 2.0]).astype("float32")
    step = newton_step(ops.convert_to_tensor(g.astype("float32")),
                       ops.convert_to_tensor(np.stack([h32] * 4)),
                       curvature="hessian_elementwise", tikhonov=0.5)
    out = ops.convert_to_numpy(step)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, g @ np.linalg.pinv(np.diag([1.5, 0.0, 2.5])), rtol=1e-5)
    # Diagonal closed forms: zero curvature, zero lambda -> zero step, no inf.
    step = newton_step(ops.convert_to_tensor(g), ops.zeros((4, 3), "float64"), diagonal=True,
                       curvature="hessian", tikhonov=0.0)
    np.testing.assert_array_equal(ops.convert_to_numpy(step), 0.0)


def test_saturated_sigmoid_bce_gives_finite_targets():
    y = np.array([[40.0, -40.0, 0.0], [35.0, 0.1, -60.0]], "float32")
    t = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], "float32")
    for curvature in ("hessian", "hessian_elementwise", "fisher"):
        loss = kn.NewtonLoss(keras.losses.BinaryCrossentropy(from_logits=True),
                             curvature=curvature, tikhonov=0.0)
        assert np.all(np.isfinite(ops.convert_to_numpy(loss.target(t, y)))), curvature
        assert np.isfinite(float(loss(t, y))), curvature


@pytest.mark.parametrize("tikhonov", [0.0, 0.3])
def test_fisher_woodbury_equals_direct_solve(rng, tikhonov):
    """m > B uses (lambda I + G G^T / B)^-1 on the B x B side; same result as m x m."""
    g = rng.normal(size=(3, 7))
    step = ops.convert_to_numpy(newton_step(ops.convert_to_tensor(g), curvature="fisher",
                                            tikhonov=tikhonov))
    fisher = g.T @ g / 3
    expected = (np.linalg.pinv(fisher + tikhonov * np.eye(7)) @ g.T).T
    np.testing.assert_allclose(step, expected, rtol=1e-8, atol=1e-10)
    # The weighted path (no Woodbury) agrees for unit weights.
    weighted = newton_step(ops.convert_to_tensor(g), curvature="fisher", tikhonov=tikhonov,
                           weights=ops.ones((3,), "float64"))
    np.testing.assert_allclose(ops.convert_to_numpy(weighted), expected, rtol=1e-6, atol=1e-8)


# -- errors ----------------------------------------------------------------------------------

def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="curvature"):
        kn.NewtonLoss("mse", curvature="newton")
    with pytest.raises(ValueError, match="tikhonov"):
        kn.NewtonLoss("mse", tikhonov=-1.0)
    with pytest.raises(ValueError, match="tikhonov"):
        kn.NewtonLoss("mse", tikhonov=float("nan"))
    with pytest.raises(ValueError, match="tikhonov"):
        kn.NewtonLoss("mse", tikhonov=float("inf"))
    with pytest.raises(TypeError, match="tikhonov"):
        kn.NewtonLoss("mse", tikhonov="small")
    with pytest.raises(TypeError, match="base_loss"):
        kn.NewtonLoss(3)
    with pytest.raises(ValueError, match="base_loss"):
        kn.NewtonLoss("no_such_loss")
    with pytest.raises(ValueError, match="reduction"):
        kn.NewtonLoss("mse", reduction="median")


def test_bad_inputs_raise_clear_errors():
    y = np.zeros((4, 3), "float32")
    scalar = kn.NewtonLoss(lambda t, p: ops.sum(p))
    with pytest.raises(ValueError, match="scalar"):
        scalar(y, y)
    wrong = kn.NewtonLoss(lambda t, p: ops.sum(p, axis=0))  # (3,), not (B,)
    with pytest.raises(ValueError, match="batch axis"):
        wrong(y, y)
    with pytest.raises(ValueError, match="batch size"):
        kn.NewtonLoss("mse")(np.zeros((5, 3), "float32"), y)

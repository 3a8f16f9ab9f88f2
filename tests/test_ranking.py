"""RankingLoss, its Newton targets, ranking metrics, four-digit MNIST sets, the ranking CNN."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import sorting_reference as ref
from keras_newton import NewtonLoss
from keras_newton import layers
from keras_newton.datasets import four_digit
from keras_newton.losses import RankingLoss
from keras_newton.metrics import ElementwiseRankAccuracy
from keras_newton.metrics import ExactMatchAccuracy
from keras_newton.models import multi_digit_cnn
from newton_reference import reference_target


def _numpy_relaxation(layer):
    c = layer.get_config()
    if isinstance(layer, layers.NeuralSort):
        return lambda s: ref.neuralsort(s, c["tau"])
    if isinstance(layer, layers.SoftSort):
        return lambda s: ref.softsort(s, c["tau"], c["power"])
    return lambda s: ref.diffsort(s, c["network"], c["steepness"], c["distribution"],
                                  c["art_lambda"])


RELAXATIONS = [
    layers.NeuralSort(tau=1.0),
    layers.SoftSort(tau=0.5),
    layers.DiffSort("odd_even", steepness=2.0, distribution="cauchy"),
    layers.DiffSort("bitonic", steepness=2.0, distribution="logistic"),
    layers.DiffSort("odd_even", steepness=1.0, distribution="optimal"),
]
IDS = ["neuralsort", "softsort", "oddeven-cauchy", "bitonic-logistic", "oddeven-optimal"]


def _problem(rng, b=3, n=4):
    """Scores with gaps >= 0.05 (no kinks within finite-difference reach), values with a tie."""
    while True:
        s = rng.normal(size=(b, n))
        gaps = np.abs(s[:, :, None] - s[:, None, :]) + np.eye(n)
        if gaps.min() > 0.05:
            break
    y = rng.integers(0, 10000, size=(b, n)).astype(np.float64)
    y[0, 1] = y[0, 2]  # a tie: broken by index
    return s, y


@pytest.mark.parametrize("relaxation", RELAXATIONS, ids=IDS)
def test_ranking_loss_is_mean_bce_against_the_true_permutation(relaxation, rng):
    s, y = _problem(rng)
    loss = RankingLoss(relaxation.__class__.from_config(
        {**relaxation.get_config(), "dtype": "float64"}))
    per_set = keras.ops.convert_to_numpy(loss.call(y, s))
    relax = _numpy_relaxation(relaxation)
    expected = [ref.ranking_bce_torch(relax(s[i]), ref.true_permutation(y[i]))
                for i in range(len(s))]
    assert per_set.shape == (3,)
    np.testing.assert_allclose(per_set, expected, rtol=1e-12)
    # The Keras reduction of the loss object: the mean over sets (float32 by default).
    np.testing.assert_allclose(float(loss(y, s)), np.mean(expected), rtol=1e-6)


def test_ranking_loss_is_finite_for_saturated_permutations():
    loss = RankingLoss(layers.NeuralSort(tau=1e-6))
    s = np.array([[0.0, 5.0, 10.0]], np.float64)
    value = keras.ops.convert_to_numpy(loss.call(np.array([[3.0, 2.0, 1.0]]), s))
    # All of P's mass on the wrong entries: each of the 4 wrong cells (two 1s where Q is 0
    # and two 0s where Q is 1) costs 100, PyTorch's floor of log; the middle row is right.
    # (Derivatives there: tests/test_ranking_bce.py.)
    assert np.isfinite(value).all()
    np.testing.assert_allclose(value, [4 * 100 / 9], rtol=1e-6)


_TARGET_CASES = [(r, c, "auto") for r in range(len(RELAXATIONS)) for c in ("hessian", "fisher")]
_TARGET_CASES += [(1, "hessian_elementwise", "auto"), (3, "hessian_elementwise", "auto")]
# The autodiff path through NewtonLoss, once per relaxation family (slow to trace).
_TARGET_CASES += [(0, "hessian", "autodiff"), (2, "hessian", "autodiff")]


@pytest.mark.parametrize(
    "index, curvature, derivatives", _TARGET_CASES,
    ids=[f"{IDS[r]}-{c}-{d}" for r, c, d in _TARGET_CASES])
def test_newton_target_matches_finite_difference_reference(index, curvature, derivatives,
                                                           rng):
    # z* in float64 against NumPy: per-set loss from the papers' formulas, gradient and
    # Hessian by central differences (h = 1e-5 / 1e-4), then the Definition 1-3 solve.
    relaxation = RELAXATIONS[index]
    # Finite differences are good to ~1e-7 here; C + lambda I may be ill-conditioned (the
    # loss is not convex), which scales their error with the step: tolerance 2e-5 times
    # the largest step (at least 1).
    s, y = _problem(rng)
    layer64 = relaxation.__class__.from_config({**relaxation.get_config(), "dtype": "float64"})
    tikhonov = 0.05
    newton = NewtonLoss(RankingLoss(layer64, derivatives=derivatives), curvature=curvature,
                        tikhonov=tikhonov)
    z = tf.function(newton.target)(tf.constant(y), tf.constant(s)).numpy()
    relax = _numpy_relaxation(relaxation)

    def loss_i(y_i, s_i):
        # Away from saturation PyTorch's BCE derivatives are those of its formula.
        return ref.ranking_bce_torch(relax(s_i), ref.true_permutation(y_i))

    expected = reference_target(loss_i, y, s, curvature, tikhonov)
    assert z.dtype == np.float64
    np.testing.assert_allclose(z, expected, atol=2e-5 * max(1.0, np.abs(expected - s).max()))
    assert np.abs(z - s).max() > 1e-3  # the step is not trivially zero


@pytest.mark.parametrize("relaxation", [
    RELAXATIONS[0], RELAXATIONS[2], layers.SoftSort(tau=0.7, power=1.5),
    layers.DiffSort("bitonic", 4.0, "logistic_phi"),
    layers.DiffSort("odd_even", 30.0, "gaussian")],
    ids=["neuralsort", "oddeven-cauchy", "softsort-p1.5", "phi", "sat"])
def test_closed_form_loss_derivatives_match_autodiff(relaxation, rng):
    # The provider's gradient and Hessian against nested-tape automatic differentiation
    # of the per-set loss (float64; 1e-10). The last case (steepness 30 on n = 6) has
    # entries of P below 1e-7, where PyTorch's l'(p) = -1 / p is large (saturated sets
    # against the reference: tests/test_ranking_bce.py).
    n = 6 if relaxation.get_config().get("steepness") == 30.0 else 4
    s, y = _problem(rng, b=3, n=n)
    s = s * (3.0 if n == 6 else 1.0)
    layer64 = relaxation.__class__.from_config({**relaxation.get_config(), "dtype": "float64"})
    loss = RankingLoss(layer64, derivatives="closed_form")
    assert loss.uses_closed_form(n)
    x = tf.constant(s)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            value = tf.reduce_sum(loss.call(tf.constant(y), x))
        grad = inner.gradient(value, x)
    hess = outer.batch_jacobian(grad, x).numpy()
    if n == 6:
        p = keras.ops.convert_to_numpy(layer64(x))
        assert ((p < 1e-7) | (p > 1 - 1e-7)).any()  # saturated somewhere
    derivs = loss.loss_derivatives(y, x, hessian=True)
    np.testing.assert_allclose(derivs.gradient.numpy(), grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(derivs.hessian.numpy(), hess, atol=1e-10)
    assert not derivs.diagonal
    only_grad = loss.loss_derivatives(y, x, hessian=False)
    assert only_grad.hessian is None
    np.testing.assert_allclose(only_grad.gradient.numpy(), grad.numpy(), atol=1e-10)


def test_derivative_source_selection():
    from keras_newton.curvature.protocol import is_provider

    assert not is_provider(RankingLoss(layers.DiffSort(), derivatives="autodiff"))
    auto = RankingLoss(layers.DiffSort())  # default: "auto"
    assert auto.derivatives == "auto" and is_provider(auto)
    assert auto.uses_closed_form(10)
    assert not auto.uses_closed_form(10, hessian=False)
    # The closed form at every n (benchmarks/ranking_derivatives.py), unless capped.
    assert RankingLoss.CLOSED_FORM_MAX_N is None and auto.uses_closed_form(64)
    auto.CLOSED_FORM_MAX_N = 16
    assert auto.uses_closed_form(16) and not auto.uses_closed_form(17)
    assert not RankingLoss(layers.NeuralSort(), derivatives="autodiff").uses_closed_form(5)
    assert RankingLoss(layers.NeuralSort(), derivatives="closed_form").uses_closed_form(64)
    with pytest.raises(ValueError, match="derivatives"):
        RankingLoss(layers.NeuralSort(), derivatives="numeric")


def test_ranking_loss_serializes_with_its_relaxation():
    loss = RankingLoss(layers.DiffSort("bitonic", 7.0, "logistic_phi", art_lambda=0.5),
                       derivatives="auto")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(clone.relaxation, layers.DiffSort)
    assert clone.derivatives == "auto" and callable(clone.loss_derivatives)
    assert clone.relaxation.get_config() == loss.relaxation.get_config()
    newton = NewtonLoss(loss, curvature="fisher", tikhonov=0.3)
    clone = NewtonLoss.from_config(newton.get_config())
    assert clone.base_loss.relaxation.distribution == "logistic_phi"


def test_ranking_loss_rejects_bad_inputs():
    with pytest.raises(TypeError, match="relaxation"):
        RankingLoss("neuralsort")
    loss = RankingLoss(layers.NeuralSort())
    with pytest.raises(ValueError, match="y_true"):
        loss.call(np.zeros((2, 3, 1)), np.zeros((2, 3), np.float32))


# -- metrics ---------------------------------------------------------------------------


def test_ranking_metrics_on_hand_built_sets():
    y_true = np.array(
        [
            [10.0, 30.0, 20.0, 40.0],  # exact
            [10.0, 30.0, 20.0, 40.0],  # items 1 and 2 swapped: 2 of 4 positions right
            [5.0, 5.0, 1.0, 9.0],  # tie 0/1 broken by index: order 2, 0, 1, 3
            [5.0, 5.0, 1.0, 9.0],  # scores order the tie the other way: 2 of 4 right
            [7.0, 7.0, 7.0, 7.0],  # all tied, scores tied too: exact (index order)
        ]
    )
    y_pred = np.array(
        [
            [0.1, 0.3, 0.2, 0.4],
            [0.1, 0.2, 0.3, 0.4],
            [0.2, 0.3, -1.0, 2.0],
            [0.3, 0.2, -1.0, 2.0],
            [0.0, 0.0, 0.0, 0.0],
        ],
        np.float32,
    )
    exact, element = ExactMatchAccuracy(), ElementwiseRankAccuracy()
    exact.update_state(y_true, y_pred)
    element.update_state(y_true, y_pred)
    np.testing.assert_allclose(float(exact.result()), 3 / 5)
    np.testing.assert_allclose(float(element.result()), (4 + 2 + 4 + 2 + 4) / 20)
    # Stateful: a second batch (one set, fully reversed: 0 of 4 right, n = 4 has no
    # fixed point under reversal) accumulates.
    exact.update_state(y_true[:1], -y_pred[:1])
    element.update_state(y_true[:1], -y_pred[:1])
    np.testing.assert_allclose(float(exact.result()), 3 / 6)
    np.testing.assert_allclose(float(element.result()), 16 / 24)
    exact.reset_state()
    assert float(exact.result()) == 0.0


def test_metrics_agree_with_numpy_argsort_on_random_sets(rng):
    y = rng.integers(0, 6, size=(200, 5)).astype(np.float64)  # many ties
    s = rng.integers(0, 6, size=(200, 5)).astype(np.float32)
    a = np.argsort(y, axis=1, kind="stable") == np.argsort(s, axis=1, kind="stable")
    exact, element = ExactMatchAccuracy(), ElementwiseRankAccuracy()
    exact.update_state(y, s)
    element.update_state(y, s)
    np.testing.assert_allclose(float(exact.result()), a.all(axis=1).mean(), rtol=1e-6)
    np.testing.assert_allclose(float(element.result()), a.mean(), rtol=1e-6)


def test_metrics_serialize():
    for metric in (ExactMatchAccuracy(name="em"), ElementwiseRankAccuracy()):
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
        assert type(clone) is type(metric) and clone.name == metric.name


# -- four-digit MNIST sets ---------------------------------------------------------------


def _fake_mnist(rng, n_train=240, n_test=60):
    """Images whose pixels spell their digit: every pixel of a `d` is 20 * d + 7 (uint8)."""

    def part(count):
        labels = rng.integers(0, 10, size=count)
        images = np.repeat((20 * labels + 7).astype(np.uint8)[:, None, None], 28, axis=1)
        return np.repeat(images, 28, axis=2), labels

    return part(n_train), part(n_test)


def _read_numbers(x):
    """Decodes (..., 28, 112) fake items back to their four-digit numbers."""
    blocks = np.round(x * 255.0).reshape(x.shape[:-2] + (28, 4, 28))
    assert (blocks == blocks[..., :1, :, :1]).all()  # each 28x28 block is one constant
    digits = (blocks[..., 0, :, 0] - 7) / 20
    return (digits * np.array([1000, 100, 10, 1])).sum(axis=-1)


def test_split_has_the_55k_5k_10k_proportions(rng):
    mnist = _fake_mnist(rng, n_train=1200, n_test=200)
    splits = four_digit.split_mnist(mnist)
    assert len(splits["train"][0]) == 1100 and len(splits["validation"][0]) == 100
    assert len(splits["test"][0]) == 200
    np.testing.assert_array_equal(splits["validation"][1], mnist[0][1][1100:])


def test_pipelines_label_the_digits_they_show(rng):
    mnist = _fake_mnist(rng)
    train, val, test = four_digit.four_digit_datasets(
        mnist, n=5, batch_size=4, num_validation_sets=10, num_test_sets=6, seed=3)
    x, y = next(iter(train))
    assert x.shape == (4, 5, 28, 112) and y.shape == (4, 5)
    assert x.dtype == np.float32 and 0.0 <= float(np.min(x)) and float(np.max(x)) <= 1.0
    np.testing.assert_array_equal(_read_numbers(x.numpy()), y.numpy())
    sizes = []
    for ds in (val, test):
        for xb, yb in ds:
            np.testing.assert_array_equal(_read_numbers(xb.numpy()), yb.numpy())
            sizes.append(len(yb))
    assert sizes == [4, 4, 2, 4, 2]  # 10 validation sets, 6 test sets, batches of 4


def test_numpy_composition_matches_the_layout(rng):
    (x_tr, y_tr), _ = _fake_mnist(rng)
    idx = np.array([[[3, 1, 4, 1], [5, 9, 2, 6]]])
    x, y = four_digit.compose_sets(x_tr, y_tr, idx)
    assert x.shape == (1, 2, 28, 112)
    np.testing.assert_allclose(x[0, 1, :, 28:56], x_tr[9] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, [[
        y_tr[3] * 1000 + y_tr[1] * 100 + y_tr[4] * 10 + y_tr[1],
        y_tr[5] * 1000 + y_tr[9] * 100 + y_tr[2] * 10 + y_tr[6]]])


def test_eval_sets_are_seeded_and_training_sets_are_fresh(rng):
    mnist = _fake_mnist(rng)
    a = four_digit.four_digit_datasets(mnist, n=3, batch_size=5, num_validation_sets=5,
                                       num_test_sets=5, seed=0)
    b = four_digit.four_digit_datasets(mnist, n=3, batch_size=5, num_validation_sets=5,
                                       num_test_sets=5, seed=1)
    val_a, val_b = next(iter(a[1]))[1].numpy(), next(iter(b[1]))[1].numpy()
    np.testing.assert_array_equal(val_a, val_b)  # same eval sets for every training seed
    test_a = next(iter(a[2]))[1].numpy()
    assert not np.array_equal(val_a, test_a)  # validation and test sets differ
    steps = [yb.numpy() for _, yb in a[0].take(3)]
    assert not np.array_equal(steps[0], steps[1]) and not np.array_equal(steps[1], steps[2])
    again = [yb.numpy() for _, yb in four_digit.four_digit_datasets(
        mnist, n=3, batch_size=5, num_validation_sets=5, num_test_sets=5, seed=0)[0].take(3)]
    np.testing.assert_array_equal(np.stack(steps), np.stack(again))  # reproducible stream
    other = next(iter(b[0]))[1].numpy()
    assert not np.array_equal(steps[0], other)  # the training seed matters


def test_dataset_arguments_are_checked(rng):
    mnist = _fake_mnist(rng)
    with pytest.raises(ValueError, match="n"):
        four_digit.four_digit_datasets(mnist, n=1)
    with pytest.raises(ValueError, match="28, 28"):
        four_digit.split_mnist(((np.zeros((10, 28, 27)), np.zeros(10)), mnist[1]))
    with pytest.raises(ValueError, match="labels"):
        four_digit.split_mnist(((mnist[0][0], mnist[0][1][:-1]), mnist[1]))


# -- the ranking CNN ---------------------------------------------------------------------


def test_multi_digit_cnn_scores_each_image_with_one_shared_cnn(rng):
    model = multi_digit_cnn(3)
    x = rng.random((2, 3, 28, 112)).astype(np.float32)
    scores = model.predict(x, verbose=0)
    assert scores.shape == (2, 3)
    scorer = model.get_layer("score_each").layer
    single = scorer.predict(x.reshape(6, 28, 112, 1), verbose=0).reshape(2, 3)
    np.testing.assert_allclose(scores, single, rtol=1e-5, atol=1e-6)
    # The architecture of docs/conventions.md ("Models"), by parameter count: conv 5*5*1*32+32, conv
    # 5*5*32*64+64, dense (7*28*64)*64+64, dense 64+1.
    assert scorer.count_params() == 832 + 51264 + 802880 + 65
    with pytest.raises(ValueError, match="n"):
        multi_digit_cnn(1)


def test_ranking_model_trains_with_newton_loss_and_round_trips(tmp_path, rng):
    mnist = _fake_mnist(rng)
    train, val, _ = four_digit.four_digit_datasets(
        mnist, n=3, batch_size=4, num_validation_sets=8, num_test_sets=4)
    assert train.element_spec[1].shape == (4, 3) == val.element_spec[1].shape  # static
    model = multi_digit_cnn(3)
    # Closed-form curvature (fast to trace; needs the static batch, see RankingLoss).
    base = RankingLoss(layers.DiffSort("odd_even", steepness=10.0), derivatives="auto")
    model.compile(keras.optimizers.Adam(1e-3),
                  loss=NewtonLoss(base, curvature="hessian", tikhonov=0.1),
                  metrics=[ExactMatchAccuracy(), ElementwiseRankAccuracy()])
    history = model.fit(train, steps_per_epoch=2, epochs=1, validation_data=val, verbose=0)
    assert {"exact_match", "val_exact_match", "val_elementwise_accuracy"} <= set(history.history)
    assert np.isfinite(history.history["loss"]).all()
    path = tmp_path / "ranker.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = next(iter(val))[0].numpy()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.loss.base_loss.relaxation.get_config() == base.relaxation.get_config()

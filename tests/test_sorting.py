"""Sorting relaxations against float64 NumPy implementations of their published formulas."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import sorting_reference as ref
from conftest import fd_gradient
from conftest import fd_hessian
from keras_newton import layers
from keras_newton.sorting import DISTRIBUTIONS
from keras_newton.sorting import permutation_matrix
from keras_newton.sorting import stable_ranks
from keras_newton.sorting.distributions import swap_probability_derivatives
from keras_newton.sorting.networks import sorting_plan


def _scores(rng, b, n, spread=1.0):
    """Random scores whose pairwise gaps are at least 1e-2 (no kinks near ties)."""
    while True:
        s = spread * rng.normal(size=(b, n))
        gaps = np.abs(s[:, :, None] - s[:, None, :]) + np.eye(n)
        if gaps.min() > 1e-2:
            return s


def _reference(layer, s):
    cfg = layer.get_config()
    if isinstance(layer, layers.NeuralSort):
        return np.stack([ref.neuralsort(v, cfg["tau"]) for v in s])
    if isinstance(layer, layers.SoftSort):
        return np.stack([ref.softsort(v, cfg["tau"], cfg["power"]) for v in s])
    return np.stack(
        [ref.diffsort(v, cfg["network"], cfg["steepness"], cfg["distribution"],
                      cfg["art_lambda"]) for v in s]
    )


def _layers(dtype="float64"):
    out = [
        layers.NeuralSort(tau=0.7, dtype=dtype),
        layers.NeuralSort(tau=3.0, dtype=dtype),
        layers.SoftSort(tau=0.5, dtype=dtype),
        layers.SoftSort(tau=2.0, power=2.0, dtype=dtype),
        layers.SoftSort(tau=1.0, power=0.5, dtype=dtype),
    ]
    for network, dist in itertools.product(("odd_even", "bitonic"), DISTRIBUTIONS):
        out.append(layers.DiffSort(network, steepness=3.0, distribution=dist, dtype=dtype))
    out.append(layers.DiffSort("bitonic", steepness=5.0, distribution="logistic_phi",
                               art_lambda=0.5, dtype=dtype))
    return out


def _name(layer):
    c = layer.get_config()
    return "-".join(str(c[k]) for k in ("network", "distribution", "tau", "power") if k in c)


@pytest.mark.parametrize("layer", _layers(), ids=_name)
@pytest.mark.parametrize("n", [2, 5, 6])
def test_layer_matches_numpy_formula(layer, n, rng):
    # Tolerance 1e-12: float64 on both sides, same formula, different implementation.
    s = _scores(rng, 4, n)
    p = keras.ops.convert_to_numpy(layer(s))
    assert p.shape == (4, n, n)
    np.testing.assert_allclose(p, _reference(layer, s), rtol=0, atol=1e-12)


@pytest.mark.parametrize("layer", _layers(), ids=_name)
def test_rows_sum_to_one_and_networks_are_doubly_stochastic(layer, rng):
    s = _scores(rng, 5, 7)
    p = keras.ops.convert_to_numpy(layer(s))
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-12)
    assert p.min() >= 0.0
    if isinstance(layer, layers.DiffSort):
        np.testing.assert_allclose(p.sum(axis=-2), 1.0, atol=1e-12)


@pytest.mark.parametrize(
    "layer",
    [layers.NeuralSort(tau=1e-4, dtype="float64"), layers.SoftSort(tau=1e-4, dtype="float64")]
    + [layers.DiffSort(net, steepness=1e9, distribution=d, dtype="float64")
       for net in ("odd_even", "bitonic") for d in DISTRIBUTIONS],
    ids=_name,
)
@pytest.mark.parametrize("n", [3, 5, 8, 10])
def test_hard_limit_is_the_argsort_permutation(layer, n, rng):
    # Scores on a grid 0.1 apart: with tau = 1e-4, the softmax tails are below e^-1000;
    # with steepness 1e9 the slowest swap tails (Cauchy, reciprocal, optimal: ~1/v) are
    # below 1e-8 per comparator, so n layers stay far inside 1e-6.
    s = rng.permuted(np.tile(np.arange(n) * 0.1, (6, 1)), axis=1) + rng.normal(size=(6, 1))
    p = keras.ops.convert_to_numpy(layer(s))
    q = np.stack([ref.true_permutation(v) for v in s])
    np.testing.assert_allclose(p, q, atol=1e-6)
    np.testing.assert_allclose(p @ s[..., None], np.sort(s)[..., None], atol=1e-6)


@pytest.mark.parametrize("n", [3, 5, 8, 10])
def test_bitonic_and_odd_even_agree_in_the_hard_limit(n, rng):
    s = _scores(rng, 8, n)
    odd_even = layers.DiffSort("odd_even", steepness=1e9, distribution="logistic",
                               dtype="float64")
    bitonic = layers.DiffSort("bitonic", steepness=1e9, distribution="logistic",
                              dtype="float64")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(odd_even(s)), keras.ops.convert_to_numpy(bitonic(s)),
        atol=1e-9,
    )


@pytest.mark.parametrize("network", ["odd_even", "bitonic"])
@pytest.mark.parametrize("n", list(range(2, 13)) + [16, 17])
def test_compiled_networks_sort_every_01_input(network, n):
    # 0-1 principle (Knuth 5.3.4, Ex. 12): a comparator network sorts every input iff it
    # sorts every 0-1 input. Hard comparators on the compiled plan, all 2^n inputs.
    plan = sorting_plan(network, n)
    inputs = np.array(list(itertools.product([0, 1], repeat=n)), np.int8)
    x = inputs.copy()
    for lo, hi in plan.layers:
        a, b = x[:, lo].copy(), x[:, hi].copy()
        x[:, lo], x[:, hi] = np.minimum(a, b), np.maximum(a, b)
    np.testing.assert_array_equal(x[:, plan.rank_slots], np.sort(inputs, axis=1))
    depth = n if network == "odd_even" else None
    if network == "bitonic":
        k = int(np.ceil(np.log2(n)))
        depth = k * (k + 1) // 2
    assert len(plan.layers) <= depth


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_bitonic_equals_diffsorts_layout_for_every_n(distribution, rng):
    # diffsort's bitonic network (top 2^k - n wires discarded, identity maps) run as diffsort
    # runs it (split/combine matrices per layer), transposed; float64: agree to 1e-6.
    for n in range(2, 18):
        for steepness in (0.7, 4.0):
            s = rng.normal(size=(3, n))
            layer = layers.DiffSort("bitonic", steepness=steepness, distribution=distribution,
                                    art_lambda=0.4, dtype="float64")
            p = keras.ops.convert_to_numpy(layer(s))
            expected = np.stack([
                ref.diffsort_forward(v, ref.diffsort_bitonic_matrices(n), steepness,
                                     distribution, 0.4).T for v in s])
            np.testing.assert_allclose(p, expected, rtol=0, atol=1e-6,
                                       err_msg=f"n={n}, steepness={steepness}")


@pytest.mark.parametrize("n", [3, 5, 10, 4, 8, 16])
def test_bottom_padding_relaxes_differently_unless_n_is_a_power_of_two(n, rng):
    # The +inf-padded layout also sorts, but for n != 2^k its relaxation is not diffsort's.
    s = rng.normal(size=(4, n))
    padded = np.stack([ref.padded_bitonic(v, 3.0, "logistic") for v in s])
    p = keras.ops.convert_to_numpy(
        layers.DiffSort("bitonic", steepness=3.0, distribution="logistic", dtype="float64")(s))
    if n & (n - 1) == 0:
        np.testing.assert_allclose(p, padded, rtol=0, atol=1e-12)
    else:
        assert np.abs(p - padded).max() > 0.05


def test_bitonic_equals_the_diffsort_package():
    # The real package (PyTorch, float64 tensors): its X[item, rank] transposed, to 1e-6.
    diffsort = pytest.importorskip("diffsort")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    for n in (3, 5, 6, 7, 10, 12, 16, 17):
        s = rng.normal(size=(4, n))
        for distribution in DISTRIBUTIONS:
            net = diffsort.DiffSortNet("bitonic", n, steepness=3.0, art_lambda=0.4,
                                       distribution=distribution)
            _, x = net(torch.tensor(s, dtype=torch.float64))
            assert x.dtype == torch.float64
            p = keras.ops.convert_to_numpy(layers.DiffSort(
                "bitonic", steepness=3.0, distribution=distribution, art_lambda=0.4,
                dtype="float64")(s))
            np.testing.assert_allclose(p, np.swapaxes(x.numpy(), 1, 2), rtol=0, atol=1e-6,
                                       err_msg=f"n={n}, {distribution}")


@pytest.mark.parametrize("n", [3, 5, 6, 7, 12])
def test_diffsort_reference_layout_sorts_in_the_hard_limit(n, rng):
    # The reference construction itself: at steepness 1e9 it is the argsort permutation.
    s = rng.permuted(np.tile(np.arange(n) * 0.1, (4, 1)), axis=1)
    for v in s:
        p = ref.diffsort(v, "bitonic", 1e9, "logistic")
        np.testing.assert_allclose(p, ref.true_permutation(v), atol=1e-9)


@pytest.mark.parametrize("distribution", ["logistic", "cauchy", "optimal"])
@pytest.mark.parametrize("n", [3, 5, 6])
def test_bitonic_closed_form_derivatives_for_n_not_a_power_of_two(distribution, n, rng):
    # permutation_derivatives of diffsort's layout against central differences of the
    # float64 reference: J to 1e-6 (h = 1e-6), <w, d2P> to 2e-4 relative (h = 1e-4).
    layer = layers.DiffSort("bitonic", steepness=2.0, distribution=distribution,
                            dtype="float64")
    s = _scores(rng, 1, n)
    w = rng.normal(size=(1, n, n))
    p, jac, hess_fn = layer.permutation_derivatives(keras.ops.convert_to_tensor(s))
    jac = keras.ops.convert_to_numpy(jac)[0]
    hess = keras.ops.convert_to_numpy(hess_fn(keras.ops.convert_to_tensor(w)))[0]

    def reference(v):
        return ref.diffsort(v, "bitonic", 2.0, distribution)

    np.testing.assert_allclose(keras.ops.convert_to_numpy(p)[0], reference(s[0]), atol=1e-12)
    for m in range(n):
        e = np.zeros(n)
        e[m] = 1e-6
        fd = (reference(s[0] + e) - reference(s[0] - e)) / 2e-6
        np.testing.assert_allclose(jac[:, :, m], fd, atol=1e-6)
    f = lambda v: float(np.sum(w[0] * reference(v)))  # noqa: E731
    np.testing.assert_allclose(hess, fd_hessian(f, s[0]), rtol=2e-4, atol=1e-5)


def test_compile_plan_rejects_invalid_layers():
    from keras_newton.sorting.networks import compile_plan

    with pytest.raises(ValueError, match="Invalid comparator"):
        compile_plan([[(0, 1), (1, 2)]], 3)
    with pytest.raises(ValueError, match="Invalid comparator"):
        compile_plan([[(0, 3)]], 3)


@pytest.mark.parametrize("layer", _layers(), ids=_name)
def test_gradients_match_finite_differences(layer, rng):
    # d sum(W * P(s)) / d s in float64 against central differences (h = 1e-6): agree to 1e-6.
    n = 5
    s = _scores(rng, 2, n)
    w = rng.normal(size=(2, n, n))
    x = tf.constant(s)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tf.reduce_sum(tf.constant(w) * layer(x))
    grad = tape.gradient(value, x).numpy()
    for b in range(2):
        f = lambda v, b=b: float(np.sum(w[b] * _reference(layer, v[None])[0]))  # noqa: E731
        np.testing.assert_allclose(grad[b], fd_gradient(f, s[b], h=1e-6), atol=1e-6)


def test_float32_layers_follow_the_float64_formula(rng):
    s = _scores(rng, 3, 6).astype(np.float32)
    for layer in _layers(dtype="float32"):
        p = keras.ops.convert_to_numpy(layer(s))
        assert p.dtype == np.float32
        np.testing.assert_allclose(p, _reference(layer, s.astype(np.float64)), atol=2e-5)


@pytest.mark.parametrize("layer", _layers(dtype="float32"), ids=_name)
def test_serialization_round_trip(layer, rng):
    s = _scores(rng, 2, 4).astype(np.float32)
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == layer.get_config()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(s)),
                                  keras.ops.convert_to_numpy(layer(s)))


def test_model_with_a_sorting_layer_round_trips(tmp_path, rng):
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(4)(inputs)
    model = keras.Model(inputs, layers.DiffSort("bitonic", 7.0, "reciprocal")(hidden))
    path = tmp_path / "m.keras"
    model.save(path)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_array_equal(keras.saving.load_model(path).predict(x, verbose=0),
                                  model.predict(x, verbose=0))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: layers.NeuralSort(tau=0.0), "tau"),
        (lambda: layers.NeuralSort(tau=-1.0), "tau"),
        (lambda: layers.SoftSort(tau=float("nan")), "tau"),
        (lambda: layers.SoftSort(power=float("inf")), "power"),
        (lambda: layers.DiffSort(steepness=-3.0), "steepness"),
        (lambda: layers.DiffSort(steepness=float("inf")), "steepness"),
        (lambda: layers.DiffSort(network="bubble"), "network"),
        (lambda: layers.DiffSort(distribution="laplace"), "distribution"),
        (lambda: layers.DiffSort(art_lambda=-0.5), "art_lambda"),
    ],
)
def test_bad_arguments_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_types_raise_type_errors():
    with pytest.raises(TypeError, match="tau"):
        layers.NeuralSort(tau="1")
    with pytest.raises(TypeError, match="steepness"):
        layers.DiffSort(steepness=None)


@pytest.mark.parametrize("layer", [layers.NeuralSort(), layers.SoftSort(), layers.DiffSort()],
                         ids=_name)
def test_too_few_items_or_wrong_rank_raise(layer):
    with pytest.raises(ValueError, match="n >= 2"):
        layer(np.zeros((3, 1), np.float32))
    with pytest.raises(ValueError, match=r"\(batch, n\)"):
        layer(np.zeros((3, 4, 2), np.float32))


def test_stable_ranks_and_true_permutation_break_ties_by_index():
    y = np.array([[3.0, 1.0, 3.0, 1.0, 2.0], [5.0, 5.0, 5.0, 5.0, 5.0]])
    ranks = keras.ops.convert_to_numpy(stable_ranks(y))
    np.testing.assert_array_equal(ranks, [[3, 0, 4, 1, 2], [0, 1, 2, 3, 4]])
    q = keras.ops.convert_to_numpy(permutation_matrix(y))
    np.testing.assert_array_equal(q, np.stack([ref.true_permutation(v) for v in y]))
    np.testing.assert_array_equal(np.argmax(q, axis=-1), np.argsort(y, axis=1, kind="stable"))


@pytest.mark.parametrize("layer", _layers(), ids=_name)
def test_closed_form_derivatives_match_finite_differences(layer, rng):
    # permutation_derivatives in float64 against central differences of the NumPy formula:
    # J = dP/ds (h = 1e-6) and <w, d2P/ds2> as the FD Hessian of <w, P> (h = 1e-4).
    n = 4
    s = _scores(rng, 2, n, spread=1.0)
    w = rng.normal(size=(2, n, n))
    p, jac, hess_fn = layer.permutation_derivatives(keras.ops.convert_to_tensor(s))
    jac = keras.ops.convert_to_numpy(jac)
    hess = keras.ops.convert_to_numpy(hess_fn(keras.ops.convert_to_tensor(w)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(p), _reference(layer, s), atol=1e-12)
    for b in range(2):
        for m in range(n):
            e = np.zeros(n)
            e[m] = 1e-6
            fd = (_reference(layer, (s[b] + e)[None])[0]
                  - _reference(layer, (s[b] - e)[None])[0]) / 2e-6
            np.testing.assert_allclose(jac[b, :, :, m], fd, atol=1e-6)
        f = lambda v, b=b: float(np.sum(w[b] * _reference(layer, v[None])[0]))  # noqa: E731
        # rtol: SoftSort with power 0.5 has curvature ~|d|^-1.5, large for close scores.
        np.testing.assert_allclose(hess[b], fd_hessian(f, s[b]), rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_swap_distribution_derivatives_match_finite_differences(distribution):
    # alpha, alpha', alpha'' at points away from the kinks, against the NumPy sigmoid and
    # central differences (h = 1e-5: first derivative to 1e-7, second to 1e-4 relative).
    diff = np.array([-0.9, -0.31, -0.07, 0.013, 0.04, 0.2, 0.77, 1.5])
    steepness, lam = 3.0, 0.4
    a, a1, a2 = (keras.ops.convert_to_numpy(t) for t in swap_probability_derivatives(
        keras.ops.convert_to_tensor(diff), steepness, distribution, lam))
    f = np.vectorize(lambda x: ref.sigmoid_f(x, steepness, distribution, lam))
    h = 1e-5
    np.testing.assert_allclose(a, f(diff), atol=1e-14)
    np.testing.assert_allclose(a1, (f(diff + h) - f(diff - h)) / (2 * h), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(a2, (f(diff + h) - 2 * f(diff) + f(diff - h)) / h**2,
                               rtol=1e-4, atol=1e-4)

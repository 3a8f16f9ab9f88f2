"""RankingLoss is PyTorch's BCELoss: its value, backward and double backward, saturated or not.

The reference (float64 NumPy, `sorting_reference`) is independent of the library: the
per-entry value, backward and double backward of PyTorch's ``BCELoss`` as ATen defines
them (`torch_bce_terms`; checked against PyTorch itself below when it is installed), the
exact first and second derivatives of the relaxations (`neuralsort_derivatives`,
`softsort_derivatives`, `diffsort_derivatives`, written so that entries near 1 lose no
precision), the chain rule (`ranking_bce_torch_derivatives`) and the Newton targets of
paper Definitions 1-3 solved with `np.linalg.solve`.

Tolerance: 1e-4 relative to the largest entry of the compared quantity (loss per set,
gradient per set, Newton step ``s - z`` per batch). In float64 the library agrees to
~1e-7 or better on these sets. "Saturated" sets are confidently wrong: their true entries
have ``p`` down to 1e-14 (DiffSort) and below ``exp(-100)`` (NeuralSort, where PyTorch's
log floor acts), with some in ``(1e-12, 1e-7)``, where clipping at ``eps = 1e-7`` used to
zero the gradient. They keep ``1 - p >= 1e-10``: closer to 1, float64 resolves ``1 - p``
only to ``1e-16 / (1 - p)`` relative, and implementations (PyTorch's included) can
differ by more than 1e-4.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import sorting_reference as ref
from keras_newton import NewtonLoss
from keras_newton import layers
from keras_newton.curvature import autodiff_derivatives
from keras_newton.losses import RankingLoss

RTOL = 1e-4
N = 5
#: Confidently wrong orders of the items 0..4 (whose true order is 0, 1, 2, 3, 4): the
#: issue's two extreme items swapped, the reversal, a shuffle.
WRONG = np.array([[4.0, 1.0, 2.0, 3.0, 0.0], [4.0, 3.0, 2.0, 1.0, 0.0], [3.0, 4.0, 0.0, 2.0, 1.0]])
IN_ORDER = np.tile(np.arange(N, dtype=np.float64), (3, 1))

#: name: (relaxation for random sets, relaxation for saturated sets, saturated scores).
CASES = {
    "neuralsort": (layers.NeuralSort(tau=1.0), layers.NeuralSort(tau=0.15), WRONG),
    "softsort": (layers.SoftSort(tau=0.5, power=1.5), layers.SoftSort(tau=0.05), WRONG),
    "diffsort-odd_even": (layers.DiffSort("odd_even", 4.0, "logistic"),
                          layers.DiffSort("odd_even", 16.0, "logistic"), 0.5 * WRONG),
    "diffsort-bitonic": (layers.DiffSort("bitonic", 2.0, "cauchy"),
                         layers.DiffSort("bitonic", 16.0, "logistic"), 0.5 * WRONG),
}
TIKHONOV = 0.3


def _float64(layer):
    return layer.__class__.from_config({**layer.get_config(), "dtype": "float64"})


def _reference_relaxation(layer):
    """``s -> (P, dP/ds, d2P/ds2)`` from the NumPy reference, for a relaxation layer."""
    c = layer.get_config()
    if isinstance(layer, layers.NeuralSort):
        return lambda s: ref.neuralsort_derivatives(s, c["tau"])
    if isinstance(layer, layers.SoftSort):
        return lambda s: ref.softsort_derivatives(s, c["tau"], c["power"])
    return lambda s: ref.diffsort_derivatives(s, c["network"], c["steepness"],
                                              c["distribution"])


def _random_sets(seed=0, b=3):
    """Scores with gaps >= 0.05 and values with a tie (broken by index)."""
    rng = np.random.default_rng(seed)
    while True:
        s = rng.normal(size=(b, N))
        if (np.abs(s[:, :, None] - s[:, None, :]) + np.eye(N)).min() > 0.05:
            break
    y = rng.integers(0, 10000, size=(b, N)).astype(np.float64)
    y[0, 1] = y[0, 2]
    return y, s


def _problem(name, regime):
    """``(float64 relaxation, y, s)`` of a case."""
    random_layer, saturated_layer, saturated_scores = CASES[name]
    if regime == "random":
        return (_float64(random_layer),) + _random_sets()
    return _float64(saturated_layer), IN_ORDER, saturated_scores


def _reference(layer, y, s):
    """Per set: loss ``(B,)``, gradient ``(B, n)``, Hessian ``(B, n, n)``, and ``P``."""
    relax = _reference_relaxation(layer)
    out = []
    for yi, si in zip(y, s):
        p, jac, hess = relax(si)
        out.append(ref.ranking_bce_torch_derivatives(p, jac, hess, ref.true_permutation(yi))
                   + (p,))
    loss, g, h, p = (np.array(v) for v in zip(*out))
    return loss, g, h, p


def _reference_target(s, g, h, curvature, tikhonov):
    """z* of paper Definitions 1-3 (unit weights) from the reference g and H."""
    eye = np.eye(s.shape[1])
    if curvature == "identity":
        return s - g
    if curvature == "hessian_elementwise":
        mats = h + tikhonov * eye
    elif curvature == "hessian":
        mats = np.broadcast_to(h.mean(axis=0) + tikhonov * eye, h.shape)
    else:  # fisher
        mats = np.broadcast_to(np.einsum("bi,bj->ij", g, g) / len(g) + tikhonov * eye,
                               h.shape)
    # The comparison below is only meaningful if the solve is well conditioned.
    assert max(np.linalg.cond(m) for m in mats) < 1e4
    return s - np.stack([np.linalg.solve(m, gi) for m, gi in zip(mats, g)])


def _assert_close(actual, expected, what):
    """``|actual - expected| <= RTOL * max|expected|`` (per leading index if 2-D+)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, what
    scale = np.abs(expected).reshape(len(expected), -1).max(axis=1) if expected.ndim > 1 \
        else np.abs(expected)
    err = np.abs(actual - expected).reshape(len(expected), -1).max(axis=1) \
        if expected.ndim > 1 else np.abs(actual - expected)
    assert (err <= RTOL * scale).all(), f"{what}: error {err} vs scale {scale}"


def _check_saturation(p, y):
    """The saturated sets are what the module docstring says they are."""
    q = np.stack([ref.true_permutation(yi) for yi in y])
    true_p = p[q == 1]
    assert true_p.min() < 1e-12  # confidently wrong
    assert ((true_p > 1e-12) & (true_p < 1e-7)).any()  # where the old clip zeroed l'
    assert (1.0 - p).min() >= 1e-10  # float64 resolves 1 - p (module docstring)


CASE_IDS = [f"{name}-{regime}" for name in CASES for regime in ("random", "saturated")]


@pytest.mark.parametrize("name, regime", [c.rsplit("-", 1) for c in CASE_IDS], ids=CASE_IDS)
def test_loss_gradient_and_newton_targets_match_pytorch_reference(name, regime):
    layer, y, s = _problem(name, regime)
    loss_ref, g_ref, h_ref, p = _reference(layer, y, s)
    if regime == "saturated":
        _check_saturation(p, y)
    loss = RankingLoss(layer)  # derivatives="auto": closed form for the Hessians
    x = tf.constant(s)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss.call(tf.constant(y), x)
        total = tf.reduce_sum(value)
    _assert_close(value.numpy(), loss_ref, "loss")
    _assert_close(tape.gradient(total, x).numpy(), g_ref, "gradient")
    for curvature in ("hessian", "hessian_elementwise", "fisher", "identity"):
        newton = NewtonLoss(loss, curvature=curvature, tikhonov=TIKHONOV)
        z = newton.target(tf.constant(y), x).numpy()
        expected = _reference_target(s, g_ref, h_ref, curvature, TIKHONOV)
        assert z.dtype == np.float64
        step, step_ref = s - z, s - expected
        err = np.abs(step - step_ref).max()
        assert err <= RTOL * np.abs(step_ref).max(), f"{curvature}: {err}"


def test_issue_example_neuralsort_extremes_swapped_gets_its_gradient():
    # NeuralSort (tau = 1), n = 5, the two extreme items swapped at score gap 1: the true
    # entries P[0, 0] and P[4, 4] are ~8e-8, below the old clip at 1e-7 (which made their
    # gradient 0 and the loss's gradient ~0.002). PyTorch's backward gives them -1 / p.
    layer = layers.NeuralSort(tau=1.0, dtype="float64")
    s = np.array([[4.0, 1.0, 2.0, 3.0, 0.0]])
    y = np.arange(5.0)[None]
    loss_ref, g_ref, h_ref, p = _reference(layer, y, s)
    assert p[0, 0, 0] < 1e-7 and p[0, 4, 4] < 1e-7
    x = tf.constant(s)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = RankingLoss(layer).call(tf.constant(y), x)
    grad = tape.gradient(value, x).numpy()
    _assert_close(value.numpy(), loss_ref, "loss")
    _assert_close(grad, g_ref, "gradient")
    assert np.abs(grad).max() > 0.1  # not the vanishing gradient of the clipped loss
    derivs = RankingLoss(layer, derivatives="closed_form").loss_derivatives(y, x)
    _assert_close(derivs.gradient.numpy(), g_ref, "closed-form gradient")
    _assert_close(derivs.hessian.numpy(), h_ref, "closed-form Hessian")


@pytest.mark.parametrize("name, regime", [c.rsplit("-", 1) for c in CASE_IDS], ids=CASE_IDS)
def test_closed_form_equals_nested_tape_autodiff(name, regime):
    # The provider's gradient and Hessian against TensorFlow's nested-tape automatic
    # differentiation of `call` (the Taylor form): the same numbers, to 1e-10 relative.
    layer, y, s = _problem(name, regime)
    x = tf.constant(s)
    closed = RankingLoss(layer, derivatives="closed_form").loss_derivatives(y, x)
    auto = autodiff_derivatives(RankingLoss(layer).call, tf.constant(y), x, hessian=True)
    for a, b in ((closed.gradient, auto.gradient), (closed.hessian, auto.hessian)):
        a, b = a.numpy(), b.numpy()
        assert np.abs(a - b).max() <= 1e-10 * np.abs(b).max()
    # Both derivative sources give NewtonLoss the same target.
    z_auto = NewtonLoss(RankingLoss(layer, derivatives="autodiff"), tikhonov=TIKHONOV)
    z_closed = NewtonLoss(RankingLoss(layer, derivatives="closed_form"), tikhonov=TIKHONOV)
    step_auto = s - z_auto.target(tf.constant(y), x).numpy()
    step_closed = s - z_closed.target(tf.constant(y), x).numpy()
    assert np.abs(step_auto - step_closed).max() <= 1e-8 * np.abs(step_auto).max()


def test_loss_is_finite_where_p_is_exactly_0_or_1():
    # Hard permutations (tau -> 0): P holds exact 0s and 1s. Each wrong entry costs 100
    # (PyTorch's log floor), with finite derivatives: l' = +-1e12 there, times dP/ds = 0.
    layer = layers.NeuralSort(tau=1e-6, dtype="float64")
    s = np.array([[0.0, 5.0, 10.0]])
    y = np.array([[3.0, 2.0, 1.0]])  # the reverse order: 4 of the 9 entries are wrong
    x = tf.constant(s)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            value = RankingLoss(layer).call(tf.constant(y), x)
        grad = inner.gradient(value, x)
    hess = outer.jacobian(grad, x).numpy()
    p = layer(x).numpy()
    assert ((p == 0.0) | (p == 1.0)).all()
    expected = ref.ranking_bce_torch(p[0], ref.true_permutation(y[0]))
    np.testing.assert_allclose(value.numpy(), [expected], rtol=1e-12)
    np.testing.assert_allclose(expected, 4 * 100 / 9, rtol=1e-12)
    assert np.isfinite(grad.numpy()).all() and np.isfinite(hess).all()


# -- the reference against PyTorch itself ------------------------------------------------


def test_reference_bce_terms_are_pytorchs():
    torch = pytest.importorskip("torch")
    p = np.array([0.0, 1e-45, 1e-30, 1e-13, 1e-12, 3e-12, 8e-8, 1e-7, 0.3, 0.5,
                  1 - 1e-9, 1 - 1e-13, 1.0])
    for q_value in (0.0, 1.0):
        q = np.full_like(p, q_value)
        pt = torch.tensor(p, dtype=torch.float64, requires_grad=True)
        value = torch.nn.functional.binary_cross_entropy(
            pt, torch.tensor(q), reduction="none")
        (d1,) = torch.autograd.grad(value.sum(), pt, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), pt)  # elementwise: the diagonal
        v_ref, d1_ref, d2_ref = ref.torch_bce_terms(p, q)
        np.testing.assert_allclose(value.detach().numpy(), v_ref, rtol=1e-12)
        np.testing.assert_allclose(d1.detach().numpy(), d1_ref, rtol=1e-12)
        np.testing.assert_allclose(d2.numpy(), d2_ref, rtol=1e-12)


def _torch_relaxations(torch):
    """NeuralSort, SoftSort and odd-even DiffSort written in PyTorch (``P[rank, item]``)."""

    def neuralsort(s, tau):
        n = s.shape[0]
        a_one = (s[:, None] - s[None, :]).abs().sum(dim=1)
        coeff = n + 1 - 2 * torch.arange(1, n + 1, dtype=s.dtype)  # n + 1 - 2 i
        desc = torch.softmax((coeff[:, None] * s[None, :] - a_one[None, :]) / tau, dim=-1)
        return desc.flip(0)

    def softsort(s, tau, power):
        desc = torch.sort(s, descending=True).values
        dist = (desc[:, None] - s[None, :]).abs()
        # |d|^p with the derivatives 0 at d = 0 (the sorted item itself), not 0 * inf.
        safe = torch.where(dist > 0, dist, torch.ones_like(dist))
        dist = torch.where(dist > 0, safe ** power, torch.zeros_like(dist))
        return torch.softmax(-dist / tau, dim=-1).flip(0)

    def odd_even(s, steepness):
        n = s.shape[0]
        x = list(s)
        rows = list(torch.eye(n, dtype=s.dtype))
        for layer in ref.odd_even_comparators(n):
            for lo, hi, _ in layer:
                alpha = torch.sigmoid(steepness * (x[hi] - x[lo]))
                x[lo], x[hi] = (alpha * x[lo] + (1 - alpha) * x[hi],
                                (1 - alpha) * x[lo] + alpha * x[hi])
                rows[lo], rows[hi] = (alpha * rows[lo] + (1 - alpha) * rows[hi],
                                      (1 - alpha) * rows[lo] + alpha * rows[hi])
        return torch.stack(rows)

    return neuralsort, softsort, odd_even


def test_reference_chain_rule_is_pytorch_autograd():
    # g and H of the reference against PyTorch: BCELoss (mean) of the relaxation written in
    # PyTorch, differentiated twice by autograd (create_graph), in float64.
    torch = pytest.importorskip("torch")
    neuralsort, softsort, odd_even = _torch_relaxations(torch)
    cases = [
        (lambda t: neuralsort(t, 1.0), lambda v: ref.neuralsort_derivatives(v, 1.0),
         WRONG[:1]),
        (lambda t: neuralsort(t, 0.15), lambda v: ref.neuralsort_derivatives(v, 0.15), WRONG),
        (lambda t: softsort(t, 0.05, 1.0), lambda v: ref.softsort_derivatives(v, 0.05), WRONG),
        (lambda t: softsort(t, 0.5, 1.5), lambda v: ref.softsort_derivatives(v, 0.5, 1.5),
         _random_sets()[1]),
        (lambda t: odd_even(t, 16.0),
         lambda v: ref.diffsort_derivatives(v, "odd_even", 16.0, "logistic"), 0.5 * WRONG),
    ]
    for torch_relax, ref_relax, scores in cases:
        for si in scores:
            q = ref.true_permutation(np.arange(N))
            p, jac, hess = ref_relax(si)
            loss_ref, g_ref, h_ref = ref.ranking_bce_torch_derivatives(p, jac, hess, q)
            x = torch.tensor(si, dtype=torch.float64, requires_grad=True)
            value = torch.nn.functional.binary_cross_entropy(torch_relax(x), torch.tensor(q))
            (g,) = torch.autograd.grad(value, x, create_graph=True)
            h = torch.stack([torch.autograd.grad(g[k], x, retain_graph=True)[0]
                             for k in range(N)])
            _assert_close([value.item()], [loss_ref], "loss")
            _assert_close(g.detach().numpy()[None], g_ref[None], "gradient")
            _assert_close(h.numpy()[None], h_ref[None], "Hessian")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_neuralsort_loss_and_gradient_equal_pytorchs_in_both_precisions(dtype):
    # The same computation in PyTorch, in float32 too: where P rounds to 1 in float32 the
    # backward's clamp max(p (1 - p), 1e-12) makes l' = 1e12 and the gradient large; the
    # loss reproduces that, as it must to match the benchmark's PyTorch training.
    torch = pytest.importorskip("torch")
    neuralsort = _torch_relaxations(torch)[0]
    tdtype = getattr(torch, dtype)
    layer = layers.NeuralSort(tau=0.05, dtype=dtype)
    for si in WRONG:
        x = torch.tensor(si, dtype=tdtype, requires_grad=True)
        q = torch.tensor(ref.true_permutation(np.arange(N)), dtype=tdtype)
        value = torch.nn.functional.binary_cross_entropy(neuralsort(x, 0.05), q)
        (g,) = torch.autograd.grad(value, x)
        xt = tf.constant(si[None].astype(dtype))
        with tf.GradientTape() as tape:
            tape.watch(xt)
            ours = RankingLoss(layer).call(tf.constant(IN_ORDER[:1].astype(dtype)), xt)
        grad = tape.gradient(ours, xt).numpy()
        # float64: here 1 - p >= 2e-9, resolved to ~5e-8 relative (module docstring).
        rtol = 1e-4 if dtype == "float32" else 1e-6
        np.testing.assert_allclose(ours.numpy(), [value.item()], rtol=rtol)
        np.testing.assert_allclose(grad[0], g.numpy(), rtol=rtol,
                                   atol=rtol * np.abs(g.numpy()).max())


# -- JAX and PyTorch backends (one subprocess each) --------------------------------------

_CHILD = r"""
import json, sys
import numpy as np
import keras
from keras_newton.curvature import autodiff_derivatives
from keras_newton.losses import RankingLoss

out = {}
for name, case in json.loads(sys.stdin.read()).items():
    layer = keras.saving.deserialize_keras_object(case["layer"])
    y = keras.ops.convert_to_tensor(np.array(case["y"]))
    s = keras.ops.convert_to_tensor(np.array(case["s"]))
    call = RankingLoss(layer).call
    if keras.backend.backend() == "torch":
        import torch.func  # per set: RankingLoss's y_true does not go through vmap on torch
        fns = [lambda v, i=i: call(y[i:i + 1], v[None])[0] for i in range(len(case["s"]))]
        g = [torch.func.grad(f)(s[i]) for i, f in enumerate(fns)]
        h = [torch.func.hessian(f)(s[i]) for i, f in enumerate(fns)]
        g, h = torch.stack(g), torch.stack(h)
    else:
        auto = autodiff_derivatives(call, y, s, hessian=True)
        g, h = auto.gradient, auto.hessian
    closed = RankingLoss(layer, derivatives="closed_form").loss_derivatives(y, s)
    out[name] = {k: keras.ops.convert_to_numpy(v).tolist() for k, v in (
        ("loss", call(y, s)), ("g", g), ("h", h), ("g_cf", closed.gradient),
        ("h_cf", closed.hessian))}
print(json.dumps(out))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_taylor_form_and_closed_form_on_other_backends(backend):
    # Value, autodiff gradient and Hessian of `call` (jax: vmap of grad/hessian; torch:
    # torch.func.grad/hessian) and the closed form, on saturated sets, in float64.
    pytest.importorskip(backend)
    names = list(CASES)
    if backend == "torch":
        # Not DiffSort: on the torch backend Keras' matmul returns float32 for float64
        # inputs (keras.src.backend.torch.numpy.matmul, Keras 3.15), so DiffSort's
        # relaxed permutation is not float64 there.
        names = ["neuralsort", "softsort"]
    cases = {}
    for name in names:
        layer, y, s = _problem(name, "saturated")
        cases[name] = {"layer": keras.saving.serialize_keras_object(layer),
                       "y": y.tolist(), "s": s.tolist()}
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_ENABLE_X64="1")
    proc = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps(cases), env=env,
                          capture_output=True, text=True, timeout=600,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(results) == sorted(names)
    for name in names:
        layer, y, s = _problem(name, "saturated")
        loss_ref, g_ref, h_ref, _ = _reference(layer, y, s)
        got = {k: np.array(v) for k, v in results[name].items()}
        _assert_close(got["loss"], loss_ref, f"{name} loss")
        for key, expected in (("g", g_ref), ("g_cf", g_ref), ("h", h_ref), ("h_cf", h_ref)):
            _assert_close(got[key], expected, f"{name} {key}")

"""The core on JAX and PyTorch: the same numbers as TensorFlow, jit on and off.

conftest forces the TensorFlow backend, so each other backend runs `backend_results` in
one subprocess with its ``KERAS_BACKEND``, and this process compares with TensorFlow's
numbers for the same inputs (computed here) and, for DiffSort, with the float64 NumPy
reference of `sorting_reference`. JAX runs everything under ``jax.jit`` (as its Keras
trainer does) and a subset op by op (each primitive compiles separately there: slow);
PyTorch runs everything eagerly and ``jit_compile=True`` (``torch.compile``, slow to
compile) on one tiny model. Rows of the backend-parity table covered:

- the autodiff seam takes a NumPy ``y_true`` (and weights) on PyTorch
  (``torch.func.vmap`` maps tensors only);
- ``model.compile(jit_compile=True)`` on PyTorch: ``torch.func`` inside Dynamo;
- ranking losses through ``torch.func.vmap`` (``ops.one_hot`` reads ``.item()``);
- DiffSort ranking targets on JAX against TensorFlow and the float64 reference, and sets
  with entries of ``P`` at exactly 0 and 1, where XLA (``jax.jit``, TensorFlow's
  ``jit_compile``) turned ``(1 - p) + 1e-12`` into ``1 - p`` and PyTorch's ``l''`` into
  ``1 / 0`` (NaN gradients and Hessians).

Tolerances, relative to the largest entry of the compared quantity (for targets, of the
Newton step ``y - z*``): 1e-4 between backends (float32), 2e-3 for float32 targets
against the float64 reference (the solves' condition numbers are below 1e3 here), 1e-4
for the saturated sets' gradients and Hessians against the reference (their hard entries
have derivatives exactly 0, so float32 noise is not amplified by ``l' = 1e12``), and 1e-4
on the weights after three SGD steps from the same initial weights.
"""

import os

import numpy as np
import pytest

import keras
from keras import ops

import keras_newton as kn
import sorting_reference as ref
from conftest import run_backend_script
from keras_newton.curvature import autodiff_derivatives, autodiff_shared_hessian
from keras_newton.layers import DiffSort, NeuralSort, SoftSort
from keras_newton.losses import RankingLoss

HERE = os.path.dirname(os.path.abspath(__file__))
CURVATURES = ("hessian", "hessian_elementwise", "fisher", "identity")
WEIGHTS = np.array([1.0, 2.0, 0.5, 1.5], "float32")
TIKHONOV = 0.1
SATURATED_TOL = 1e-4


def quartic(y_true, y_pred):
    """A loss without a closed form (autodiff): ``sum((y - t)^4 + y^2 / 2)``."""
    return ops.sum(ops.square(ops.square(y_pred - y_true)) + 0.5 * ops.square(y_pred),
                   axis=-1)


# -- cases (the same NumPy inputs in every process) ---------------------------------------


def newton_cases():
    """name: (base loss factory, NumPy y_true, NumPy y_pred), batch 4, m = 3."""
    rng = np.random.default_rng(0)
    b, m = 4, 3
    logits = rng.normal(size=(b, m)).astype("float32")
    return {
        "mse": (keras.losses.MeanSquaredError, rng.normal(size=(b, m)).astype("float32"),
                logits),
        "cce": (lambda: keras.losses.CategoricalCrossentropy(from_logits=True),
                np.eye(m, dtype="float32")[rng.integers(0, m, size=b)], logits),
        "bce": (keras.losses.BinaryCrossentropy,
                (rng.uniform(size=(b, m)) > 0.5).astype("float32"),
                rng.uniform(0.1, 0.9, size=(b, m)).astype("float32")),
        "quartic": (lambda: quartic, rng.normal(size=(b, m)).astype("float32"), logits),
    }


RELAXATIONS = {
    "neuralsort": lambda: NeuralSort(tau=1.0),
    "softsort": lambda: SoftSort(tau=0.5),
    "diffsort_odd_even": lambda: DiffSort("odd_even", 4.0, "logistic"),
    "diffsort_bitonic": lambda: DiffSort("bitonic", 2.0, "cauchy"),
}
RANKING_KINDS = [(d, c) for d in ("auto", "autodiff") for c in ("hessian", "fisher")]


def ranking_batch():
    """Scores ``(3, 5)`` with gaps >= 0.05 and values with a tie (broken by index)."""
    rng = np.random.default_rng(1)
    while True:
        s = rng.normal(size=(3, 5))
        if (np.abs(s[:, :, None] - s[:, None, :]) + np.eye(5)).min() > 0.05:
            break
    y = rng.integers(0, 100, size=(3, 5)).astype("float32")
    y[0, 1] = y[0, 2]
    return y, s.astype("float32")


def saturated_batch():
    """Sets on which steep logistic DiffSort has entries of ``P`` at exactly 0 and 1.

    Far-apart scores give swap probabilities that round to exactly 1 (with derivative
    exactly 0: no float32 noise amplified by ``l' = 1e12``), one close pair per set keeps
    the derivatives nonzero, and the values order some far items the other way: ``p = 1``
    where ``q = 0``, where XLA's reassociation made ``l'' = 1 / 0``.
    """
    s = np.array([[0.0, 2.0, 4.0, 4.05, 8.0],
                  [5.0, 1.0, 1.04, -3.0, 9.0],
                  [3.0, -1.0, 7.0, 6.97, 0.0],
                  [0.0, 2.0, 4.0, 6.0, 8.0]], "float32")
    y = np.array([[1.0, 0.0, 2.0, 3.0, 4.0],
                  [4.0, 1.0, 2.0, 0.0, 3.0],
                  [3.0, 0.0, 2.0, 4.0, 1.0],
                  [4.0, 3.0, 2.0, 1.0, 0.0]], "float32")
    return y, s


def saturated_relaxation():
    return DiffSort("odd_even", 30.0, "logistic")


def fit_data():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 4)).astype("float32")
    ys = [rng.normal(size=(12, 3)).astype("float32"),
          rng.normal(size=(12, 3)).astype("float32"),
          rng.normal(size=(12, 3)).astype("float32"),
          rng.normal(size=(12, 4)).astype("float32")]
    weights = [rng.normal(size=(4, k)).astype("float32") * 0.5 for k in (3, 3, 3, 4)]
    return x, ys, weights


FIT_HEADS = [  # (output size, Newton loss factory)
    (3, lambda: kn.NewtonLoss(quartic, curvature="hessian", tikhonov=TIKHONOV)),
    (3, lambda: kn.NewtonLoss(quartic, curvature="fisher", tikhonov=TIKHONOV)),
    (3, lambda: kn.NewtonLoss(keras.losses.CategoricalCrossentropy(from_logits=True),
                              curvature="hessian_elementwise", tikhonov=TIKHONOV)),
    (4, lambda: kn.NewtonLoss(RankingLoss(DiffSort("odd_even", 4.0, "logistic")),
                              curvature="fisher", tikhonov=TIKHONOV)),
]


def fit_weights(heads, jit_compile):
    """Weights after 3 SGD steps of a model with one Dense head per Newton loss."""
    x, ys, weights = fit_data()
    inputs = keras.Input((4,))
    outputs = [keras.layers.Dense(FIT_HEADS[i][0], use_bias=False, name=f"head{i}")(inputs)
               for i in heads]
    model = keras.Model(inputs, outputs)
    model.set_weights([weights[i] for i in heads])
    model.compile(keras.optimizers.SGD(0.1), loss=[FIT_HEADS[i][1]() for i in heads],
                  jit_compile=jit_compile)
    model.fit(x, [ys[i] for i in heads], batch_size=4, epochs=1, shuffle=False, verbose=0)
    return [np.asarray(w).tolist() for w in model.get_weights()]


def _tolist(x):
    return np.asarray(ops.convert_to_numpy(x), np.float64).tolist()


def newton_targets(names=None):
    """NewtonLoss targets of `newton_cases` (all or ``names``), a NumPy ``y_true``, every
    curvature kind, unweighted and weighted."""
    out = {}
    for name, (base, y_true, y_pred) in newton_cases().items():
        if names is not None and name not in names:
            continue
        for c in CURVATURES:
            for weighted in (False, True):
                loss = kn.NewtonLoss(base(), curvature=c, tikhonov=TIKHONOV)
                w = WEIGHTS if weighted else None
                out[f"{name}-{c}-{int(weighted)}"] = loss.target(y_true, y_pred, w)
    return out


def ranking_targets(names=None, kinds=RANKING_KINDS):
    """RankingLoss targets of the relaxations (all or ``names``) for ``kinds``."""
    y, s = ranking_batch()
    out = {}
    for name, relax in RELAXATIONS.items():
        if names is not None and name not in names:
            continue
        for derivatives, c in kinds:
            loss = kn.NewtonLoss(RankingLoss(relax(), derivatives=derivatives), curvature=c,
                                 tikhonov=TIKHONOV)
            out[f"{name}-{derivatives}-{c}"] = loss.target(y, s)
    return out


def saturated_derivatives():
    """Autodiff gradient of the Taylor form and the closed-form (g, H), saturated sets."""
    y, s = saturated_batch()
    loss = RankingLoss(saturated_relaxation(), derivatives="closed_form")
    auto = autodiff_derivatives(loss.call, y, ops.convert_to_tensor(s), hessian=False)
    closed = loss.loss_derivatives(y, ops.convert_to_tensor(s))
    return {"g_auto": auto.gradient, "g_closed": closed.gradient, "h_closed": closed.hessian}


def seam_results():
    """The autodiff seam called directly with a NumPy ``y_true``."""
    _, y_true, y_pred = newton_cases()["quartic"]
    yp = ops.convert_to_tensor(y_pred)
    d = autodiff_derivatives(quartic, y_true, yp)
    g, h_sum = autodiff_shared_hessian(quartic, y_true, yp, WEIGHTS)
    y, s = ranking_batch()
    rank = autodiff_derivatives(RankingLoss(RELAXATIONS["diffsort_bitonic"]()).call, y,
                                ops.convert_to_tensor(s), hessian=False)
    return {"g": d.gradient, "h": d.hessian, "g_shared": g, "h_sum": h_sum,
            "g_ranking": rank.gradient}


def round_trip(path):
    """Save and load a model compiled with NewtonLoss(RankingLoss(...)) as ``.keras``."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 4)).astype("float32")
    y = rng.normal(size=(6, 5)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5)])
    model.compile("sgd", loss=kn.NewtonLoss(
        RankingLoss(DiffSort("bitonic", 7.0, "logistic_phi", art_lambda=0.5),
                    derivatives="autodiff"), curvature="fisher", tikhonov=0.3))
    model.save(path)
    loaded = keras.saving.load_model(path)
    return {"same_predictions": bool(np.array_equal(np.asarray(model.predict(x, verbose=0)),
                                                    np.asarray(loaded.predict(x, verbose=0)))),
            "loss_config": keras.saving.serialize_keras_object(loaded.loss),
            "same_loss": float(model.evaluate(x, y, verbose=0))
            == float(loaded.evaluate(x, y, verbose=0)),
            "loss": float(loaded.evaluate(x, y, verbose=0))}


def backend_results(tmpdir):
    """Everything the parity test compares, on the current Keras backend."""
    backend = keras.backend.backend()
    out = {"backend": backend}
    to_json = lambda d: {k: _tolist(v) for k, v in d.items()}  # noqa: E731
    all_heads = list(range(len(FIT_HEADS)))
    if backend == "jax":
        import jax

        # Everything under jax.jit (as Keras' JAX trainer runs it) ...
        out["newton_jit"] = to_json(jax.jit(newton_targets)())
        out["ranking_jit"] = to_json(jax.jit(ranking_targets)())
        out["saturated_jit"] = to_json(jax.jit(saturated_derivatives)())
        out["fit_jit"] = fit_weights(all_heads, jit_compile=True)
        # ... and op by op, which compiles every primitive separately (slow): the autodiff
        # loss, DiffSort's autodiff Fisher and Hessian, and two heads of the fit.
        out["newton"] = to_json(newton_targets(("quartic",)))
        out["ranking"] = to_json(ranking_targets(
            ("diffsort_odd_even",), (("auto", "fisher"), ("autodiff", "hessian"))))
        out["fit"] = fit_weights([0, 3], jit_compile=False)
        out["fit_heads"] = [0, 3]
    else:
        out["newton"] = to_json(newton_targets())
        out["ranking"] = to_json(ranking_targets())
        out["saturated"] = to_json(saturated_derivatives())
        out["fit"] = fit_weights(all_heads, jit_compile=False)
        out["fit_heads"] = all_heads
        # torch.compile: the two autodiff kinds that failed under Dynamo, in one tiny model.
        out["fit_jit"] = fit_weights([0, 1], jit_compile=True)
    out["fit_jit_heads"] = all_heads if backend == "jax" else [0, 1]
    out["seam"] = to_json(seam_results())
    out["round_trip"] = round_trip(os.path.join(tmpdir, "ranker.keras"))
    return out


BACKEND_SCRIPT = r"""
import json, sys
sys.path.insert(0, {tests!r})
import test_backends_core as t
print("RESULT" + json.dumps(t.backend_results({tmp!r})))
"""


# -- float64 references ---------------------------------------------------------------------


def diffsort_reference_target(relax, y, s, curvature, tikhonov):
    """z* of paper Definitions 2-3 from the float64 DiffSort and PyTorch-BCE reference."""
    c = relax.get_config()
    g, h = [], []
    for yi, si in zip(y, np.asarray(s, np.float64)):
        p, jac, hess = ref.diffsort_derivatives(si, c["network"], c["steepness"],
                                                c["distribution"])
        _, gi, hi = ref.ranking_bce_torch_derivatives(p, jac, hess, ref.true_permutation(yi))
        g.append(gi)
        h.append(hi)
    g, h = np.array(g), np.array(h)
    mat = h.mean(axis=0) if curvature == "hessian" else g.T @ g / len(g)
    mat = mat + tikhonov * np.eye(len(mat))
    assert np.linalg.cond(mat) < 1e3  # float32 results can be compared at 2e-3
    return s - np.linalg.solve(mat, g.T).T


def saturated_reference():
    """float64 ``g`` and ``H`` per set of `saturated_batch` (steepness 30, logistic)."""
    y, s = saturated_batch()
    c = saturated_relaxation().get_config()
    g, h = [], []
    for yi, si in zip(y, s.astype(np.float64)):
        p, jac, hess = ref.diffsort_derivatives(si, c["network"], c["steepness"],
                                                c["distribution"])
        _, gi, hi = ref.ranking_bce_torch_derivatives(p, jac, hess, ref.true_permutation(yi))
        g.append(gi)
        h.append(hi)
    return {"g_auto": np.array(g), "g_closed": np.array(g), "h_closed": np.array(h)}


def _assert_step_close(got, want, y_pred, tol, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert np.isfinite(got).all(), f"{what}: not finite"
    scale = max(np.abs(np.asarray(y_pred, np.float64) - want).max(), 1e-6)
    err = np.abs(got - want).max()
    assert err <= tol * scale, f"{what}: error {err:.3g} vs step scale {scale:.3g}"


def _assert_rel_close(got, want, tol, what):
    """``|got - want| <= tol * max|want|``, and ``got`` finite."""
    _assert_step_close(got, want, np.zeros_like(np.asarray(want, np.float64)), tol, what)


def _tf_results():
    """TensorFlow's numbers for the same cases (eager, and under XLA for the saturated)."""
    import tensorflow as tf

    to_np = lambda d: {k: np.asarray(v) for k, v in d.items()}  # noqa: E731
    return {"newton": to_np(newton_targets()), "ranking": to_np(ranking_targets()),
            "saturated": to_np(saturated_derivatives()),
            "saturated_xla": to_np(tf.function(saturated_derivatives, jit_compile=True)()),
            "seam": to_np(seam_results()),
            "fit": fit_weights(list(range(len(FIT_HEADS))), jit_compile=False)}


@pytest.fixture(scope="module")
def tf_results():
    return _tf_results()


def test_tensorflow_agrees_with_the_float64_references(tf_results):
    # The TensorFlow numbers the other backends are compared with are themselves right.
    y, s = ranking_batch()
    for name in ("diffsort_odd_even", "diffsort_bitonic"):
        for derivatives, c in RANKING_KINDS:
            want = diffsort_reference_target(RELAXATIONS[name](), y, s, c, TIKHONOV)
            _assert_step_close(tf_results["ranking"][f"{name}-{derivatives}-{c}"], want, s,
                               2e-3, f"tensorflow {name}-{derivatives}-{c}")
    # Saturated sets, eager and under XLA (which used to reassociate (1 - p) + 1e-12 into
    # 1 - p: l'' = 1/0 at p = 1, a NaN Hessian and gradient).
    want = saturated_reference()
    for mode in ("saturated", "saturated_xla"):
        for key, value in tf_results[mode].items():
            _assert_rel_close(value, want[key], SATURATED_TOL, f"tensorflow {mode} {key}")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_backend_matches_tensorflow(backend, tf_results, tmp_path):
    got = run_backend_script(BACKEND_SCRIPT.format(tests=HERE, tmp=str(tmp_path)), backend)
    assert got["backend"] == backend
    modes = ("", "_jit") if backend == "jax" else ("",)

    # NewtonLoss: every curvature kind, closed forms and autodiff, weighted or not.
    cases = newton_cases()
    for mode in modes:
        assert got["newton" + mode], mode
        for key, value in got["newton" + mode].items():
            y_pred = cases[key.split("-")[0]][2]
            _assert_step_close(value, tf_results["newton"][key], y_pred, 1e-4,
                               f"{backend}{mode} NewtonLoss {key}")
    assert len(got["newton_jit" if backend == "jax" else "newton"]) == 32

    # RankingLoss: closed form and autodiff, Hessian and Fisher; DiffSort also against
    # the float64 reference.
    y, s = ranking_batch()
    for mode in modes:
        assert got["ranking" + mode], mode
        for key, value in got["ranking" + mode].items():
            _assert_step_close(value, tf_results["ranking"][key], s, 1e-4,
                               f"{backend}{mode} RankingLoss {key}")
            name, derivatives, c = key.split("-")
            if name.startswith("diffsort"):
                ref_z = diffsort_reference_target(RELAXATIONS[name](), y, s, c, TIKHONOV)
                _assert_step_close(value, ref_z, s, 2e-3,
                                   f"{backend}{mode} {key} vs float64 reference")
    assert len(got["ranking_jit" if backend == "jax" else "ranking"]) == 16

    # Saturated sets (jax.jit gave NaN there): the float64 reference.
    saturated = got["saturated_jit" if backend == "jax" else "saturated"]
    for key, want in saturated_reference().items():
        _assert_rel_close(saturated[key], want, SATURATED_TOL, f"{backend} saturated {key}")

    # The seam itself with a NumPy y_true.
    for key, want in tf_results["seam"].items():
        _assert_rel_close(got["seam"][key], want, 1e-5, f"{backend} seam {key}")

    # Three SGD steps from the same weights: TensorFlow's weights.
    fit_tf = tf_results["fit"]
    for mode in ("fit", "fit_jit"):
        heads = got[mode + "_heads"]
        assert len(got[mode]) == len(heads)
        for w, i in zip(got[mode], heads):
            _assert_rel_close(w, fit_tf[i], 1e-4, f"{backend} {mode} head {i}")

    # .keras round trip: same predictions, loss and loss config as TensorFlow's.
    trip = got["round_trip"]
    assert trip["same_predictions"] and trip["same_loss"] and np.isfinite(trip["loss"])
    config = trip["loss_config"]
    assert config["class_name"] == "NewtonLoss"
    inner = config["config"]
    assert (inner["curvature"], inner["tikhonov"]) == ("fisher", 0.3)
    base = inner["base_loss"]["config"]
    assert base["derivatives"] == "autodiff"
    assert base["relaxation"]["config"]["network"] == "bitonic"
    assert base["relaxation"]["config"]["art_lambda"] == 0.5

"""Backend parity of `RelaxedBellmanFord` and of the sampled losses (JAX, PyTorch, TF).

- `RelaxedBellmanFord`: forward values against the float64 AlgoVision replay
  (`algovision_reference`), gradients against TensorFlow's (computed here, in float64;
  TensorFlow's are checked against finite differences of the replay in
  tests/test_bellman_ford_algovision.py, and here too for the small cases), For and While
  tracebacks, with jit off and on (``jax.jit``; on PyTorch the While loop also inside
  ``torch.func.vmap``, where it runs as a fixed-length masked loop), second derivatives
  on small maps (``jax.hessian``, ``torch.func.hessian``), and a few training steps of
  ``fit`` equal to TensorFlow's (``jit_compile`` off and on for JAX).
  ``torch.compile`` of the layer is left out: it works (a graph break per While step) but
  compiles for minutes.
- Sampled losses: a 3-step ``fit`` with a zero learning rate on a fixed batch (so that
  only the noise changes the loss) must give a different loss at every step, the same
  losses for a second run with the same seed, and, where the RNG kernels are those of eager
  calls, exactly the losses of three successive eager calls of the loss (the trainer draws
  the loss's own noise stream). TensorFlow with ``jit_compile`` True and False here; JAX
  (jit on and off) and PyTorch (eager; ``torch.compile`` once, on the smallest case) each in
  one subprocess, with its ``KERAS_BACKEND`` (conftest forces TensorFlow).
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

import algovision_reference as ref
import keras_newton as kn
from keras_newton.losses import FenchelYoungLoss
from keras_newton.losses import StochasticSmoothingLoss
from keras_newton.paths import RelaxedBellmanFord

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WARCRAFT = np.array([0.8, 1.2, 5.3, 7.7, 9.2])
ATOL = 1e-10  # float64 layer vs float64 replay: rounding only (~1e-13 observed)


# -- cases, shared with the subprocesses -------------------------------------------------


def bf_cases():
    """name -> (costs float64, layer kwargs, output weights of the scalar sum(out * w))."""
    rng = np.random.default_rng(21)
    warcraft = rng.choice(WARCRAFT, (3, 12, 12))
    line = np.zeros((1, 1, 12))  # never meets the epsilon rule: the bound decides
    small = rng.uniform(0.5, 2.0, (2, 4, 5))  # T = 2: cells not reached
    cases = {
        "for": (warcraft, dict(beta=10.0, loop="for")),
        "while": (warcraft, dict(beta=10.0, loop="while")),
        # The bound stops the loop (19 steps: a chunk of 16 and 3 more on JAX).
        "while_bound": (warcraft, dict(beta=10.0, loop="while", max_iterations=20)),
        # AlgoVision's bound 2**10 stops it (the max t-conorm: forward only, as the
        # backends split the gradient of max(a, a) differently).
        "while_default_bound": (line, dict(beta=30.0, loop="while", t_conorm="max")),
        "for_unreached": (small, dict(beta=2.0, iterations=2, loop="for")),
        "while_unreached": (small, dict(beta=2.0, iterations=2, loop="while",
                                        max_iterations=64)),
    }
    return {name: (costs, kwargs, rng.normal(size=costs.shape))
            for name, (costs, kwargs) in cases.items()}


def replay(costs, kwargs):
    """The AlgoVision replay for a layer's kwargs (``infinity`` 1e4 where cells are not
    reached: see tests/test_bellman_ford_algovision.py)."""
    args, kw = _replay_args(costs, kwargs)
    return ref.relaxed_shortest_path(*args, **kw)


def _replay_args(costs, kwargs):
    h, w = costs.shape[1:]
    steps = kwargs.get("iterations") or 2 * max(h, w) + 1
    return ((costs, kwargs["beta"], steps, kwargs.get("t_conorm", "probabilistic")),
            dict(loop=kwargs["loop"], max_iter=kwargs.get("max_iterations") or 2**10,
                 infinity=1e4 if kwargs.get("iterations") else ref.INFTY))


VMAP_CASES = ("while", "while_bound", "while_unreached")  # PyTorch's masked loop
NO_GRADIENT = ("while_default_bound",)
HESSIAN_CASES = ("while_unreached",)  # second order, first map (For: test_shared_hessian)

FIT_X = np.random.default_rng(3).normal(size=(4, 6)).astype("float32")
FIT_KERNEL = np.random.default_rng(4).normal(size=(6, 16)).astype("float32") * 0.3
FIT_BIAS = np.full((16,), 0.5, "float32")
FIT_PATHS = (np.random.default_rng(5).random((4, 4, 4)) > 0.5).astype("float32")


def bf_fit_history(jit_compile):
    """3 SGD steps of costs = softplus(Dense(x)) -> RelaxedBellmanFord(While) -> MSE."""
    inputs = keras.Input((6,))
    dense = keras.layers.Dense(16, activation="softplus")
    costs = keras.layers.Reshape((4, 4))(dense(inputs))
    model = keras.Model(inputs, RelaxedBellmanFord(loop="while")(costs))
    dense.set_weights([FIT_KERNEL, FIT_BIAS])
    model.compile(keras.optimizers.SGD(0.5), "mse", jit_compile=jit_compile)
    history = model.fit(FIT_X, FIT_PATHS, epochs=3, batch_size=4, verbose=0, shuffle=False)
    return history.history["loss"]


# Sampled losses: a linear model with fixed weights, a zero learning rate.
NOISE_X = np.random.default_rng(6).normal(size=(4, 3)).astype("float32")
NOISE_Y = np.random.default_rng(7).normal(size=(4, 3)).astype("float32")
NOISE_ONE_HOT = np.eye(3, dtype="float32")[[0, 2, 1, 0]]
NOISE_KERNEL = np.random.default_rng(8).normal(size=(3, 3)).astype("float32")


def masked_square(y_true, y_pred):
    """A non-differentiable per-sample loss for Gaussian smoothing."""
    return ops.sum((y_pred - y_true) ** 2 * ops.cast(y_pred > 0, y_pred.dtype), axis=-1)


def argmin_one_hot(costs):
    return ops.one_hot(ops.argmin(costs, axis=-1), costs.shape[-1], dtype=costs.dtype)


SAMPLED = {
    "smoothing": (lambda: StochasticSmoothingLoss(masked_square, samples=2, sigma=0.5,
                                                  seed=3), NOISE_Y),
    "fenchel_young": (lambda: FenchelYoungLoss(argmin_one_hot, samples=2, sigma=0.5,
                                               seed=4), NOISE_ONE_HOT),
    # Its loss depends on the noise through the solutions (discrete) and the Hessian
    # estimate: enough samples and noise that no two steps give the same solutions.
    "newton_fenchel_young": (lambda: kn.NewtonLoss(
        FenchelYoungLoss(argmin_one_hot, samples=8, sigma=2.0, seed=5),
        curvature="hessian", tikhonov=1.0), NOISE_ONE_HOT),
}


def _linear_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)])
    model.layers[0].set_weights([NOISE_KERNEL, np.zeros(3, "float32")])
    return model


def noise_fit_history(name, jit_compile):
    make, y = SAMPLED[name]
    model = _linear_model()
    model.compile(keras.optimizers.SGD(0.0), loss=make(), jit_compile=jit_compile)
    history = model.fit(NOISE_X, y, epochs=3, batch_size=4, verbose=0, shuffle=False)
    return history.history["loss"]


def noise_eager_losses(name):
    """Three successive eager calls of a fresh loss on the model's predictions."""
    make, y = SAMPLED[name]
    loss, pred = make(), _linear_model()(NOISE_X)
    return [float(ops.convert_to_numpy(loss(y, pred))) for _ in range(3)]


def noise_results(modes):
    """{mode: {name: {"first", "second", "eager"}}} for ``modes`` (jit_compile values)."""
    out = {}
    for jit_compile in modes:
        out[str(jit_compile)] = {
            name: {"first": noise_fit_history(name, jit_compile),
                   "second": noise_fit_history(name, jit_compile),
                   "eager": noise_eager_losses(name)}
            for name in SAMPLED
        }
    return out


def check_noise(results, same_as_eager):
    """Fresh noise at every step, reproducible, and (where ``same_as_eager[mode]``) the
    eager noise stream."""
    for mode, by_loss in results.items():
        for name, got in by_loss.items():
            first, second = np.array(got["first"]), np.array(got["second"])
            where = f"{name}, jit_compile={mode}"
            assert first.shape == (3,) and np.all(np.isfinite(first)), where
            gaps = np.abs(first[:, None] - first[None, :])[np.triu_indices(3, 1)]
            assert gaps.min() > 1e-6 * np.abs(first).max(), f"same loss twice: {where} {first}"
            np.testing.assert_array_equal(first, second, err_msg=where)
            if same_as_eager[mode]:
                np.testing.assert_allclose(first, got["eager"], rtol=1e-5, err_msg=where)


# -- TensorFlow, in this process ----------------------------------------------------------


def tf_value_and_grad(layer, costs, weights):
    import tensorflow as tf

    x = tf.constant(costs)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(x)
        value = tf.reduce_sum(out * weights)
    return out.numpy(), tape.gradient(value, x).numpy()


@pytest.fixture(scope="module")
def tf_bf():
    """TensorFlow's float64 outputs and gradients, whole batch and map by map."""
    result = {}
    for name, (costs, kwargs, weights) in bf_cases().items():
        if name in NO_GRADIENT:
            continue
        layer = RelaxedBellmanFord(dtype="float64", **kwargs)
        out, grad = tf_value_and_grad(layer, costs, weights)
        result[name] = {"out": out, "grad": grad}
        if name in VMAP_CASES:
            result[name]["grad_per_map"] = np.stack([
                tf_value_and_grad(layer, costs[i:i + 1], weights[i:i + 1])[1][0]
                for i in range(len(costs))])
        if name in HESSIAN_CASES:
            result[name]["hessian"] = tf_hessian(layer, costs[:1], weights[:1])
    return result


def tf_hessian(layer, costs, weights):
    """Hessian of sum(layer(c) * w) w.r.t. the flattened costs of one map."""
    import tensorflow as tf

    x = tf.constant(costs)
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            value = tf.reduce_sum(layer(x) * weights)
        grad = inner.gradient(value, x)
    m = costs.size
    return tf.reshape(outer.jacobian(grad, x, experimental_use_pfor=False), (m, m)).numpy()


def test_tensorflow_reference_gradients_match_the_replay(tf_bf):
    """The reference gradients: TF's equal finite differences of the replay (small maps)
    and its outputs the replay (every case)."""
    for name, (costs, kwargs, weights) in bf_cases().items():
        if name in NO_GRADIENT:
            continue
        np.testing.assert_allclose(tf_bf[name]["out"], replay(costs, kwargs), rtol=0,
                                   atol=1e-9, err_msg=name)
        if not name.endswith("unreached"):  # small maps (zero costs: no central FD)
            continue
        h, fd = 1e-5, np.zeros_like(costs)
        for idx in np.ndindex(costs.shape):
            e = np.zeros_like(costs)
            e[idx] = h
            fd[idx] = np.sum((replay(costs + e, kwargs) - replay(costs - e, kwargs))
                             * weights) / (2 * h)
        assert np.abs(fd).max() > 1e-3
        np.testing.assert_allclose(tf_bf[name]["grad"], fd, rtol=1e-6, atol=1e-8,
                                   err_msg=name)


def test_while_cases_stop_by_each_rule():
    """The premises of the While cases: the replay's loop stops by its epsilon rule
    (``while``), by a bound that cuts it short (``while_bound``) and by AlgoVision's
    ``max_iter`` (``while_default_bound``)."""
    cases = bf_cases()
    steps = {}
    for name in ("while", "while_bound", "while_default_bound"):
        args, kw = _replay_args(*cases[name][:2])
        steps[name] = ref.relaxed_shortest_path(*args, **kw, return_iterations=True)[1]
    assert 20 < steps["while"] < 2**10
    assert steps["while_bound"] == 20
    assert steps["while_default_bound"] == 2**10


def test_tensorflow_sampled_losses_draw_fresh_noise_with_and_without_xla():
    # XLA picks another random-number algorithm than the CPU kernels: same seed, other
    # samples than eager calls, so only the step-to-step and run-to-run checks apply there.
    check_noise(noise_results([False, True]), {"False": True, "True": False})


# -- JAX and PyTorch, one subprocess each ------------------------------------------------

BACKEND_SCRIPT = r"""
import json, sys, warnings
import numpy as np
sys.path.insert(0, {tests!r})
import keras
from keras import ops
import test_backends_paths_stochastic as t
from keras_newton.paths import RelaxedBellmanFord

backend = keras.backend.backend()
out = {{"bf": {{}}}}

if backend == "jax":
    import jax
    import jax.numpy as jnp

    def value_and_grad(layer, costs, weights, jit):
        def f(c):
            o = layer(c)
            return jnp.sum(o * weights), o
        fn = jax.value_and_grad(f, has_aux=True)
        fn = jax.jit(fn) if jit else fn
        (_, o), g = fn(jnp.asarray(costs))
        return np.asarray(o), np.asarray(g)
    jits = (False, True)
else:
    import torch

    def value_and_grad(layer, costs, weights, jit):
        c = torch.tensor(costs, requires_grad=True)
        o = layer(c)
        (o * torch.tensor(weights)).sum().backward()
        return o.detach().numpy(), c.grad.numpy()
    jits = (False,)

for name, (costs, kwargs, weights) in t.bf_cases().items():
    layer = RelaxedBellmanFord(dtype="float64", **kwargs)
    for jit in jits:
        o, g = value_and_grad(layer, costs, weights, jit)
        out["bf"][name + "/jit=" + str(jit)] = {{"out": o.tolist(), "grad": g.tolist(),
                                                "dtype": str(o.dtype)}}
    if name in t.HESSIAN_CASES:  # second order (NewtonLoss(curvature="hessian"))
        c1, w1 = costs[:1], weights[:1]
        if backend == "jax":
            hess = jax.jit(jax.hessian(lambda c: jnp.sum(layer(c) * w1)))(jnp.asarray(c1))
        else:
            hess = torch.func.hessian(lambda c: (layer(c) * torch.tensor(w1)).sum())(
                torch.tensor(c1))
        out["bf"][name + "/hessian"] = np.asarray(hess).reshape(c1.size, c1.size).tolist()
    if backend == "torch" and name in t.VMAP_CASES:
        from torch.func import grad, vmap
        single = lambda c: layer(c[None])[0]
        c, w = torch.tensor(costs), torch.tensor(weights)
        o = vmap(single)(c)
        g = vmap(grad(lambda c, w: (single(c) * w).sum()))(c, w)
        out["bf"][name + "/vmap"] = {{"out": o.numpy().tolist(), "grad": g.numpy().tolist()}}

out["bf_fit"] = {{str(jit): t.bf_fit_history(jit) for jit in jits}}

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out["noise"] = t.noise_results(jits)
    if backend == "torch":  # torch.compile: one case (slow to compile)
        out["noise_compiled"] = t.noise_fit_history("smoothing", True)
    if backend == "jax":  # a hand-written stateless step does not carry the noise: warned
        loss = t.SAMPLED["smoothing"][0]()
        with keras.StatelessScope():
            loss(t.NOISE_Y, t.NOISE_X)
out["noise_warnings"] = [str(w.message) for w in caught if "same noise" in str(w.message)]
print("RESULT" + json.dumps(out))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends(backend, tf_bf):
    pytest.importorskip(backend)
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_ENABLE_X64="1",
               PYTHONPATH=os.pathsep.join([REPO, HERE]))
    proc = subprocess.run([sys.executable, "-c", BACKEND_SCRIPT.format(tests=HERE)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    result = json.loads(line[len("RESULT"):])

    # RelaxedBellmanFord: forward = replay, gradient = TensorFlow's, jit off and on.
    cases = bf_cases()
    jits = ("False", "True") if backend == "jax" else ("False",)
    for name, (costs, kwargs, weights) in cases.items():
        expected = replay(costs, kwargs)
        atol = 1e-9 if name.endswith("unreached") else ATOL
        if backend == "torch" and kwargs.get("t_conorm") == "max":
            # Keras 3.15 on PyTorch: ops.maximum of two float64 tensors returns float32
            # (dtypes.result_type reads torch dtypes as float32), so the max t-conorm is
            # float32-accurate there.
            atol = 1e-7
        for jit in jits:
            got = result["bf"][f"{name}/jit={jit}"]
            assert got["dtype"] == "float64"
            np.testing.assert_allclose(got["out"], expected, rtol=0, atol=atol,
                                       err_msg=f"{name} jit={jit}")
            if name in NO_GRADIENT:
                continue
            grad_tf = tf_bf[name]["grad"]
            np.testing.assert_allclose(got["grad"], grad_tf, rtol=0,
                                       atol=1e-9 * max(1.0, np.abs(grad_tf).max()),
                                       err_msg=f"{name} jit={jit}")
        if name in HESSIAN_CASES:
            hess_tf = tf_bf[name]["hessian"]
            assert np.abs(hess_tf).max() > 1e-3
            np.testing.assert_allclose(result["bf"][f"{name}/hessian"], hess_tf, rtol=0,
                                       atol=1e-8 * np.abs(hess_tf).max(), err_msg=name)
        if backend == "torch" and name in VMAP_CASES:
            # Map by map: the stop rule sees one map, as the replay of that map alone.
            got = result["bf"][f"{name}/vmap"]
            per_map = np.concatenate([replay(costs[i:i + 1], kwargs)
                                      for i in range(len(costs))])
            np.testing.assert_allclose(got["out"], per_map, rtol=0, atol=atol, err_msg=name)
            grad_tf = tf_bf[name]["grad_per_map"]
            np.testing.assert_allclose(got["grad"], grad_tf, rtol=0,
                                       atol=1e-9 * max(1.0, np.abs(grad_tf).max()),
                                       err_msg=name)

    # A few training steps through the While traceback: TensorFlow's losses (float32).
    expected_fit = bf_fit_history(False)
    for jit in jits:
        np.testing.assert_allclose(result["bf_fit"][jit], expected_fit, rtol=2e-5,
                                   err_msg=f"jit_compile={jit}")
    assert expected_fit[0] != expected_fit[-1]  # the steps moved the weights

    # Sampled losses: fresh noise at every step, the eager stream, jit on and off.
    check_noise(result["noise"], {jit: True for jit in jits})
    if backend == "torch":
        np.testing.assert_allclose(result["noise_compiled"],
                                   result["noise"]["False"]["smoothing"]["first"], rtol=1e-5)
    # Keras' fit carries the noise state; a hand-written stateless step is warned about.
    expected_warnings = 1 if backend == "jax" else 0
    assert len(result["noise_warnings"]) == expected_warnings, result["noise_warnings"]

"""The device engine of ``keras-newton bench ranking`` (`keras_newton.app.ranking_device`) and
its sets drawn on the device (`keras_newton.datasets.four_digit.FourDigitSampler`).

Specification (docstrings of both modules; docs/reproducing.md):

1. Composition is exact. ``FourDigitSampler.compose(indices)`` (and ``sampler(indices)``)
   is the four images of an item side by side along the width, divided by 255, labelled
   with the four digits' place values: equal, bit for bit, to an independent NumPy
   composition written here. A draw shows the indices drawn: ``sampler()`` is
   ``compose(draw_indices())`` of a twin sampler of the same seed. Checked on TensorFlow
   (in process), JAX and PyTorch (one subprocess each).
2. Same distribution as the host pipelines. The sampler's indices and the NumPy /
   tf.data pipeline's (`train_indices`, TensorFlow's Philox stream) are each uniform on
   ``[0, N)`` (chi-square goodness of fit), independent across positions (chi-square
   contingency of binned indices: two digits of an item, two items of a set, one slot in
   consecutive batches), and the composed labels (a two-digit alphabet, so that ties are
   frequent) follow the exact occupancy law of the number of distinct numbers per set and
   the uniform law over the 16 numbers; the sampler's and the pipeline's label statistics
   agree (two-sample chi-square). Every p-value must exceed 1e-3; the seeds are fixed, so
   the test is deterministic. A seed gives one stream (two samplers of one seed draw the
   same batches, another seed other batches, consecutive batches differ). All backends.
3. Side by side equals one by one. `train_side_by_side` of the six runs
   ``(variant, seed)`` for baseline / hessian / fisher x seeds 0, 1 gives, per run, the
   record and final weights of that run trained alone (`train_side_by_side` of one run):
   - eagerly on TensorFlow (the model compiled with ``run_eagerly=True``) and with XLA
     (``jit_compile=True``) on JAX: bit for bit (curves, final weights);
   - PyTorch: one tiny case (two runs of different seeds, two steps), bit for bit;
   - in a TensorFlow graph (``jit_compile=False``, as ``--quick``): one SGD step gives
     each tower its run's gradient alone within 1e-5 of the largest entry, and the
     ``--engine device`` command's runs (7.) have the one-by-one base-loss curves
     within rtol 1e-4 (first point) / 1e-3. Not bit for bit: the graph rounds sums
     differently with more towers (and not reproducibly from one run to the next: the
     same six-run training repeated differs by ~1e-5 in weights), and Adam turns
     rounding noise in near-zero gradients (the last bias of a shift-invariant ranking
     loss has a gradient of pure rounding) into steps of the learning rate, so after six
     steps weights differ by up to ~1e-3 and evaluation scores by up to ~3e-3, as much
     as the closest gap between two items' scores: the graph's trained weights and
     accuracies are therefore compared in the eager and JAX runs only.
4. The initial weights of a run depend on its seed alone and are the ``keras`` engine's:
   ``keras.utils.set_random_seed(s); multi_digit_cnn(n)``, bit for bit (also under
   mixed precision); runs of one seed see the same sets, runs of other seeds other sets.
5. Mixed precision: the CNNs' layers compute in bfloat16 with float32 variables, the
   scoring head and the scores reaching the loss are float32, the global policy is
   restored after the build; one training step's logged per-run losses are the losses
   of the scores that step saw (re-run from the pre-step state): the baseline's base
   loss equals a float64 NumPy NeuralSort BCE (rtol 1e-6), the Newton loss equals the
   loss object applied to those float32 scores; ``loss`` is their sum; the bf16 scores
   differ from float32 scores of the same weights by a bfloat16-sized amount (1e-4 ..
   5e-2 relative: bfloat16 really is used, and nothing worse).
6. Time budget: with a budget no chunk fits (1e-6 s), training stops after the first
   chunk: ``steps_done == eval_every`` and a complete record (the keys of an unbudgeted
   record, the best step and test accuracy read from its one-point curve, equal to the
   first point of the unbudgeted run); without a budget ``steps_done == steps``.
7. CLI: ``keras-newton bench ranking --quick --engine device`` writes ``results.json``
   whose runs were trained 6 side by side, ``steps`` steps each, whose table has the
   "Device engine" line, and whose runs are those trained one by one (3.); ``--time-budget``
   or ``--mixed-precision`` without ``--engine device``, and ``--engine gpu``, exit with
   status 2 and one ``keras-newton: error:`` line naming the option, before any training.
   ``--resume`` after an interrupted command keeps the stored runs and trains only the
   missing ones, side by side, each equal to the run the first command trained.
8. `ranking.validate_config` rejects an unknown engine and a time budget that is not a
   positive finite number of seconds (0, -1, nan, inf, True, "5").
9. Serialization: a model holding a ``FourDigitSampler`` round-trips through a ``.keras``
   file: the reloaded sampler composes the same sets bit for bit (its images come back
   from the weights, not the config) and, with the same seed, draws the same stream.
"""

import json
import math

import keras
import numpy as np
import pytest
from scipy import stats

import sorting_reference as ref
from conftest import run_backend_script
from keras_newton.app import cli, ranking, ranking_device
from keras_newton.datasets import load_mnist
from keras_newton.datasets.four_digit import (FourDigitSampler, compose_sets,
                                              sample_set_indices, split_mnist,
                                              train_indices)
from keras_newton.models import multi_digit_cnn

VARIANTS = ("baseline", "hessian", "fisher")
RUNS = [(v, None, s) for s in (0, 1) for v in VARIANTS]  # the quick bench's job order
P_MIN = 1e-3

# -- helpers shared by the in-process checks and the subprocesses ---------------------------

# Composition (1.): 40 random uint8 images and digits; 2 sets of 3 items.
COMPOSE_N, COMPOSE_SEED, COMPOSE_SETS, COMPOSE_ITEMS = 40, 7, 2, 3
# Distribution (2.): 50 images, 25 of digit 0 and 25 of digit 1; 40 batches of 100 sets
# of 5 items.
DIST_N, DIST_BATCH, DIST_ITEMS, DIST_CALLS, DIST_SEED = 50, 100, 5, 40, 0

TINY = dict(steps=4, eval_every=2, batch_size=3, validation_sets=6, test_sets=6,
            eval_batch_size=6)


def compose_images():
    rng = np.random.default_rng(COMPOSE_SEED)
    return (rng.integers(0, 256, (COMPOSE_N, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, COMPOSE_N))


def distribution_images():
    rng = np.random.default_rng(DIST_SEED)
    return (rng.integers(0, 256, (DIST_N, 28, 28), dtype=np.uint8),
            np.repeat([0, 1], DIST_N // 2))


def numpy_compose(images, labels, indices):
    """Reference composition: per item, the four images concatenated left to right, /255;
    the number is the four labels' place values (written without the library)."""
    indices = np.asarray(indices)
    lead = indices.shape[:-1]
    items = indices.reshape(-1, 4)
    x = np.stack([np.concatenate([images[i] for i in item], axis=1) for item in items])
    x = (x / 255.0).astype(np.float32).reshape(lead + (28, 112))
    y = np.array([sum(int(labels[i]) * 10 ** (3 - p) for p, i in enumerate(item))
                  for item in items], np.float32).reshape(lead)
    return x, y


def _np(t):
    return np.asarray(keras.ops.convert_to_numpy(t))


def sampler_checks(make_sampler):
    """What every backend reports about `FourDigitSampler` (run in process on TensorFlow,
    in the subprocess on JAX and PyTorch); ``make_sampler`` is the class."""
    images, labels = compose_images()
    idx = sample_set_indices(COMPOSE_N, COMPOSE_SETS, COMPOSE_ITEMS, seed=5)
    s = make_sampler(images, labels, n=COMPOSE_ITEMS, batch_size=COMPOSE_SETS, seed=11)
    twin = make_sampler(images, labels, n=COMPOSE_ITEMS, batch_size=COMPOSE_SETS, seed=11)
    out = {}
    out["given"] = [_np(t).tolist() for t in s.compose(idx)]
    out["given_call"] = [_np(t).tolist() for t in s(idx)]
    drawn = s.draw_indices()
    out["drawn_dtype"] = str(_np(drawn).dtype)
    out["drawn"] = _np(drawn).tolist()
    out["drawn_composed"] = [_np(t).tolist() for t in s.compose(drawn)]
    out["twin_call"] = [_np(t).tolist() for t in twin()]

    d_images, d_labels = distribution_images()
    big = make_sampler(d_images, d_labels, n=DIST_ITEMS, batch_size=DIST_BATCH,
                       seed=DIST_SEED)
    draws, numbers = [], []
    for _ in range(DIST_CALLS):
        i = big.draw_indices()
        draws.append(_np(i))
        numbers.append(_np(big.compose(i)[1]))
    out["dist_indices"] = np.stack(draws).tolist()
    out["dist_numbers"] = np.stack(numbers).tolist()

    def stream(seed, calls):
        small = make_sampler(d_images, d_labels, n=2, batch_size=2, seed=seed)
        return [_np(small.draw_indices()).tolist() for _ in range(calls)]

    out["stream_a"], out["stream_b"], out["stream_c"] = (stream(3, 3), stream(3, 3),
                                                         stream(4, 1))
    return out


def side_by_side_checks(mnist, config, runs, eager=False):
    """Trains ``runs`` side by side, then each alone; returns the records, the towers'
    initial and final weights of the side-by-side model and of each single run, and the
    ``keras`` engine's initial weights per seed."""
    captured = []
    build = ranking_device.build_side_by_side

    def capturing_build(*args, **kwargs):
        model = build(*args, **kwargs)
        entry = {"model": model, "init": [[np.array(w) for w in t.get_weights()]
                                          for t in model.towers]}
        if eager:
            compile_ = model.compile
            model.compile = lambda **kw: compile_(run_eagerly=True, **kw)
        captured.append(entry)
        return model

    def final(entry):
        return [[np.array(w) for w in t.get_weights()] for t in entry["model"].towers]

    ranking_device.build_side_by_side = capturing_build
    try:
        together = ranking_device.train_side_by_side(mnist, config, runs, ranking.make_loss,
                                                     progress=False)
        out = {"together": together, "init": captured[-1]["init"],
               "final": final(captured[-1]), "alone": [], "alone_final": []}
        for run in runs:
            record, = ranking_device.train_side_by_side(mnist, config, [run],
                                                        ranking.make_loss, progress=False)
            out["alone"].append(record)
            out["alone_final"].append(final(captured[-1])[0])
    finally:
        ranking_device.build_side_by_side = build
    out["keras_init"] = {}
    for seed in sorted({s for _, _, s in runs}):
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        weights = multi_digit_cnn(config["n"]).get_weights()
        out["keras_init"][seed] = [np.array(w) for w in weights]
    return out


def max_weight_diff(a, b):
    assert [w.shape for w in a] == [w.shape for w in b]
    return max(float(np.max(np.abs(x.astype(np.float64) - y))) for x, y in zip(a, b))


def summarize_side_by_side(out, runs):
    """JSON-able: the records, and the largest weight differences (side by side vs alone,
    initial vs the keras engine's)."""
    return {
        "together": [_record_json(r) for r in out["together"]],
        "alone": [_record_json(r) for r in out["alone"]],
        "final_diff": [max_weight_diff(out["final"][i], out["alone_final"][i])
                       for i in range(len(runs))],
        "init_diff": [max_weight_diff(out["init"][i], out["keras_init"][seed])
                      for i, (_, _, seed) in enumerate(runs)],
        "trained_distance": [max_weight_diff(out["final"][i], out["init"][i])
                             for i in range(len(runs))],
    }


def _record_json(record):
    return json.loads(json.dumps(record))


# -- the JAX and PyTorch subprocesses -------------------------------------------------------

BACKEND_SCRIPT = """
import json
import numpy as np
import keras
import test_ranking_device as t
from keras_newton.app import ranking
from keras_newton.datasets import load_mnist
from keras_newton.datasets.four_digit import FourDigitSampler

result = {{"backend": keras.backend.backend()}}
result["sampler"] = t.sampler_checks(FourDigitSampler)
config = ranking.validate_config(ranking.make_config("quick", engine="device", **{config}))
runs = {runs}
out = t.side_by_side_checks(load_mnist("bundled", verbose=False), config, runs)
result["side_by_side"] = t.summarize_side_by_side(out, runs)
result["config"] = {{k: config[k] for k in ("steps", "eval_every")}}
if {mixed} is not None:  # mixed precision, side by side and one by one
    config, runs = {mixed}
    config = ranking.validate_config(ranking.make_config("quick", engine="device", **config))
    out = t.side_by_side_checks(load_mnist("bundled", verbose=False), config, runs)
    result["mixed"] = t.summarize_side_by_side(out, runs)
    result["mixed_config"] = {{k: config[k] for k in ("steps", "eval_every")}}
print("RESULT" + json.dumps(result))
"""

# JAX: the six runs of 3. on a tiny config, the step compiled with XLA (as on a GPU);
# PyTorch (slow on CPU): two runs of two seeds, two steps, not compiled.
BACKEND_CASES = {
    "jax": (dict(TINY, jit_compile=True), RUNS),
    "torch": (dict(TINY, steps=2, eval_every=1), [("baseline", None, 0), ("hessian", None, 1)]),
}
# JAX also trains two runs in mixed precision (the device benchmark's default), two steps.
MIXED_CASES = {
    "jax": (dict(TINY, steps=2, eval_every=1, jit_compile=True, mixed_precision=True),
            [("baseline", None, 0), ("fisher", None, 1)]),
}


@pytest.fixture(scope="module")
def backend_results():
    cache = {}

    def get(backend):
        if backend not in cache:
            config, runs = BACKEND_CASES[backend]
            cache[backend] = run_backend_script(
                BACKEND_SCRIPT.format(config=repr(config), runs=repr(runs),
                                      mixed=repr(MIXED_CASES.get(backend))), backend,
                timeout=300)
        return cache[backend]

    return get


@pytest.fixture(scope="module")
def tf_sampler_results():
    return json.loads(json.dumps(sampler_checks(FourDigitSampler)))


def _sampler_results(backend, tf_sampler_results, backend_results):
    if backend == "tensorflow":
        return tf_sampler_results
    got = backend_results(backend)
    assert got["backend"] == backend
    return got["sampler"]


BACKENDS = ["tensorflow", "jax", "torch"]


# -- 1. composition ------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_composition_is_exact(backend, tf_sampler_results, backend_results):
    got = _sampler_results(backend, tf_sampler_results, backend_results)
    images, labels = compose_images()
    idx = sample_set_indices(COMPOSE_N, COMPOSE_SETS, COMPOSE_ITEMS, seed=5)
    x_ref, y_ref = numpy_compose(images, labels, idx)
    # The reference reads the layout independently; the NumPy pipeline agrees with it.
    np.testing.assert_array_equal(compose_sets(images, labels, idx)[0], x_ref)
    for key in ("given", "given_call"):
        x, y = (np.asarray(a, np.float32) for a in got[key])
        assert x.shape == (COMPOSE_SETS, COMPOSE_ITEMS, 28, 112)
        np.testing.assert_array_equal(x, x_ref)
        np.testing.assert_array_equal(y, y_ref)

    drawn = np.asarray(got["drawn"])
    assert got["drawn_dtype"] == "int32"
    assert drawn.shape == (COMPOSE_SETS, COMPOSE_ITEMS, 4)
    assert drawn.min() >= 0 and drawn.max() < COMPOSE_N
    x_ref, y_ref = numpy_compose(images, labels, drawn)
    for key in ("drawn_composed", "twin_call"):  # twin_call: a draw inside the call
        x, y = (np.asarray(a, np.float32) for a in got[key])
        np.testing.assert_array_equal(x, x_ref)
        np.testing.assert_array_equal(y, y_ref)


def test_composition_of_float_and_channel_images():
    """Float images in [0, 1] are taken as they are; (N, 28, 28, 1) equals (N, 28, 28)."""
    images, labels = compose_images()
    idx = sample_set_indices(COMPOSE_N, 3, 2, seed=1)
    x_ref, y_ref = numpy_compose(images, labels, idx)
    floats = FourDigitSampler((images / 255.0).astype(np.float32), labels, n=2)
    channels = FourDigitSampler(images[..., None], labels, n=2)
    for sampler in (floats, channels):
        x, y = sampler.compose(idx)
        np.testing.assert_array_equal(_np(x), x_ref)
        np.testing.assert_array_equal(_np(y), y_ref)


# -- 2. distribution -----------------------------------------------------------------------

def _occupancy(n_items, values):
    """P(number of distinct values among ``n_items`` uniform draws from ``values`` = k)."""
    stirling = np.zeros((n_items + 1, n_items + 1))
    stirling[0, 0] = 1
    for i in range(1, n_items + 1):
        for k in range(1, i + 1):
            stirling[i, k] = k * stirling[i - 1, k] + stirling[i - 1, k - 1]
    return np.array([math.comb(values, k) * stirling[n_items, k] * math.factorial(k)
                     / values ** n_items for k in range(n_items + 1)])


def _label_statistics(numbers):
    """(counts of sets with <= 3, 4, 5 distinct numbers; counts of each of the 16 numbers)."""
    numbers = np.asarray(numbers).reshape(-1, DIST_ITEMS)
    distinct = np.array([len(set(row)) for row in numbers])
    by_distinct = np.array([np.sum(distinct <= 3), np.sum(distinct == 4),
                            np.sum(distinct == 5)])
    values = sorted(int(f"{k:04b}") for k in range(16))  # 0, 1, 10, 11, ..., 1111
    by_number = np.array([np.sum(numbers == v) for v in values])
    assert by_number.sum() == numbers.size  # nothing outside the alphabet
    return by_distinct, by_number


def _check_uniform_independent(indices, what):
    """indices ``(calls, sets, n, 4)``: uniform on [0, N), positions independent."""
    assert indices.min() >= 0 and indices.max() < DIST_N
    counts = np.bincount(indices.reshape(-1), minlength=DIST_N)  # 1600 expected per image
    p = stats.chisquare(counts).pvalue
    assert p > P_MIN, (what, "uniform", p)
    bins = indices * 5 // DIST_N
    pairs = {
        "digit 0 vs digit 1": (bins[..., 0], bins[..., 1]),
        "item 0 vs item 1": (bins[:, :, 0, :], bins[:, :, 1, :]),
        "batch t vs batch t+1": (bins[:-1], bins[1:]),
    }
    for name, (a, b) in pairs.items():
        table = np.zeros((5, 5))
        np.add.at(table, (a.reshape(-1), b.reshape(-1)), 1)
        p = stats.chi2_contingency(table).pvalue
        assert p > P_MIN, (what, name, p)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sampler_draws_the_pipelines_distribution(backend, tf_sampler_results,
                                                  backend_results):
    got = _sampler_results(backend, tf_sampler_results, backend_results)
    images, labels = distribution_images()
    sampler_idx = np.asarray(got["dist_indices"])
    assert sampler_idx.shape == (DIST_CALLS, DIST_BATCH, DIST_ITEMS, 4)
    pipeline_idx = np.stack([train_indices(DIST_N, DIST_ITEMS, DIST_BATCH, DIST_SEED, step)
                             for step in range(DIST_CALLS)])
    # The sampler's labels are those its indices show.
    sampler_numbers = np.asarray(got["dist_numbers"])
    np.testing.assert_array_equal(sampler_numbers,
                                  numpy_compose(images, labels, sampler_idx)[1])
    pipeline_numbers = compose_sets(images, labels, pipeline_idx)[1]

    # Digits are fair coins (25 + 25 images), so a number is uniform over 16 values and
    # the distinct numbers of a set follow the occupancy law of 5 draws from 16.
    law = _occupancy(DIST_ITEMS, 16)
    assert math.isclose(law.sum(), 1.0) and law[0] == 0
    expected_distinct = np.array([law[:4].sum(), law[4], law[5]])
    stats_of = {}
    for what, idx, numbers in (("sampler", sampler_idx, sampler_numbers),
                               ("pipeline", pipeline_idx, pipeline_numbers)):
        _check_uniform_independent(idx, what)
        by_distinct, by_number = _label_statistics(numbers)
        sets = by_distinct.sum()
        p = stats.chisquare(by_distinct, expected_distinct * sets).pvalue
        assert p > P_MIN, (what, "distinct numbers per set", by_distinct, p)
        p = stats.chisquare(by_number).pvalue
        assert p > P_MIN, (what, "numbers", p)
        stats_of[what] = (by_distinct, by_number)
    for k in range(2):  # two-sample: the sampler's and the pipeline's label statistics
        p = stats.chi2_contingency(np.stack([stats_of["sampler"][k],
                                             stats_of["pipeline"][k]])).pvalue
        assert p > P_MIN, (k, stats_of, p)

    # One seed, one stream; another seed, another; consecutive batches differ.
    a, b, c = (np.asarray(got[k]) for k in ("stream_a", "stream_b", "stream_c"))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])


# -- 3. side by side equals one by one ------------------------------------------------------

CURVE_KEYS = ("step", "base_loss", "val_exact_match", "val_elementwise",
              "test_exact_match", "test_elementwise", "val_select")


@pytest.fixture(scope="module")
def mnist():
    return load_mnist("bundled", verbose=False)


@pytest.fixture(scope="module")
def quick_device_config():
    return ranking.validate_config(ranking.make_config("quick", engine="device"))


@pytest.fixture(scope="module")
def tf_eager_runs(mnist, quick_device_config):
    """The quick config's six runs, side by side and one by one, compiled eagerly."""
    return side_by_side_checks(mnist, quick_device_config, RUNS, eager=True)


def _assert_records_equal(together, alone, config, k):
    for i, (t, a) in enumerate(zip(together, alone)):
        for key in CURVE_KEYS:
            assert t["curve"][key] == a["curve"][key], (i, key)
        assert t["curve"]["step"] == list(range(config["eval_every"], config["steps"] + 1,
                                               config["eval_every"]))
        for key in ("variant", "seed", "tikhonov", "test_exact_match", "test_elementwise",
                    "best_step", "best_val_exact_match", "diverged", "steps_done"):
            assert t[key] == a[key], (i, key)
        assert t["runs_side_by_side"] == k and a["runs_side_by_side"] == 1
        assert t["steps_done"] == config["steps"]


def test_side_by_side_equals_one_by_one_tensorflow_eager(tf_eager_runs, quick_device_config):
    out = tf_eager_runs
    _assert_records_equal(_record_json(out["together"]), _record_json(out["alone"]),
                          quick_device_config, len(RUNS))
    for i, run in enumerate(RUNS):
        assert max_weight_diff(out["final"][i], out["alone_final"][i]) == 0.0, run
        # ... and training did move the weights (the comparison is not of initial weights).
        assert max_weight_diff(out["final"][i], out["init"][i]) > 1e-3, run


def _one_sgd_step(mnist, config, runs):
    """The towers' weight change in one compiled training step with SGD at learning rate 1:
    minus the gradient of the model's loss (no Adam: no amplification of rounding)."""
    keras.backend.clear_session()
    model = ranking_device.build_side_by_side(config, runs, split_mnist(mnist)["train"],
                                              ranking.make_loss)
    model.compile(optimizer=keras.optimizers.SGD(1.0), jit_compile=config["jit_compile"])
    before = [[np.array(w, np.float64) for w in t.get_weights()] for t in model.towers]
    model.fit(np.zeros((1, 1), np.float32), batch_size=1, epochs=1, verbose=0)
    return [[b - np.array(w, np.float64) for b, w in zip(bs, t.get_weights())]
            for bs, t in zip(before, model.towers)]


def test_side_by_side_gradients_tensorflow_compiled(mnist, quick_device_config):
    """Compiled TensorFlow: each tower's gradient in the side-by-side step is its run's
    gradient alone, within 1e-5 of the tower's largest gradient entry (graph rounding;
    the last bias's gradient is rounding noise around 0 for a shift-invariant loss, so
    the tolerance is the tower's, not the tensor's)."""
    together = _one_sgd_step(mnist, quick_device_config, RUNS)
    for i, run in enumerate(RUNS):
        alone, = _one_sgd_step(mnist, quick_device_config, [run])
        scale = max(np.max(np.abs(g)) for g in alone)
        assert all(np.max(np.abs(g)) > 1e-4 * scale for g in alone[:-1]), run  # not zero
        for k, (a, b) in enumerate(zip(together[i], alone)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * scale,
                                       err_msg=f"{run} weight {k}")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_side_by_side_equals_one_by_one_compiled(backend, backend_results):
    got = backend_results(backend)
    config, runs = BACKEND_CASES[backend]
    config = dict(config, **got["config"])
    sbs = got["side_by_side"]
    _assert_records_equal(sbs["together"], sbs["alone"], config, len(runs))
    assert sbs["final_diff"] == [0.0] * len(runs)
    assert min(sbs["trained_distance"]) > 1e-4


def test_side_by_side_equals_one_by_one_mixed_precision_jax(backend_results):
    got = backend_results("jax")
    config, runs = MIXED_CASES["jax"]
    sbs = got["mixed"]
    _assert_records_equal(sbs["together"], sbs["alone"], dict(config, **got["mixed_config"]),
                          len(runs))
    assert sbs["final_diff"] == [0.0] * len(runs)
    assert sbs["init_diff"] == [0.0] * len(runs)
    assert min(sbs["trained_distance"]) > 1e-4


# -- 4. initial weights ---------------------------------------------------------------------

@pytest.mark.parametrize("mixed", [False, True])
def test_initial_weights_are_the_keras_engines(mixed, mnist, quick_device_config):
    config = dict(quick_device_config, mixed_precision=mixed)
    keras.backend.clear_session()
    model = ranking_device.build_side_by_side(config, RUNS, split_mnist(mnist)["train"],
                                              ranking.make_loss)
    towers = [[np.array(w) for w in t.get_weights()] for t in model.towers]
    sets = model(None)
    for seed in (0, 1):
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        expected = multi_digit_cnn(config["n"]).get_weights()
        for i, (_, _, s) in enumerate(RUNS):
            if s == seed:
                assert max_weight_diff(towers[i], expected) == 0.0, (i, seed)
                assert all(w.dtype == np.float32 for w in towers[i])
    # Runs of one seed see one batch of sets; the seeds' batches differ.
    labels = [_np(sets[f"labels_{i}"]) for i in range(len(RUNS))]
    for i, (_, _, s) in enumerate(RUNS):
        same = [j for j, (_, _, t) in enumerate(RUNS) if t == s]
        assert all(np.array_equal(labels[i], labels[j]) for j in same)
    assert not np.array_equal(labels[0], labels[3])


def test_initial_weights_on_jax_and_torch(backend_results):
    for backend in ("jax", "torch"):
        assert backend_results(backend)["side_by_side"]["init_diff"] == [0.0] * len(
            BACKEND_CASES[backend][1]), backend


# -- 5. mixed precision ---------------------------------------------------------------------

def test_mixed_precision_step(mnist, quick_device_config):
    config = dict(quick_device_config, mixed_precision=True)
    runs = [("baseline", None, 0), ("hessian", None, 0)]
    train = split_mnist(mnist)["train"]
    keras.backend.clear_session()
    policy = keras.config.dtype_policy().name
    model = ranking_device.build_side_by_side(config, runs, train, ranking.make_loss)
    assert keras.config.dtype_policy().name == policy == "float32"
    for tower in model.towers:
        cnn = tower.get_layer("score_each").layer
        computes = [(type(layer).__name__, layer.compute_dtype) for layer in cnn.layers]
        assert computes[:-1] == [(name, "bfloat16") for name, _ in computes[:-1]]
        assert [c for c in computes if c[0] == "Conv2D"] == [("Conv2D", "bfloat16")] * 2
        assert computes[-1] == ("Dense", "float32")  # the scoring head
        assert all(w.dtype == "float32" for w in tower.weights)
    model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]))
    state = np.array(_np(model.samplers[0].seed_generator.state.value))
    before = [t.get_weights() for t in model.towers]
    logs = model.train_on_batch(np.zeros((1, 1), np.float32), return_dict=True)

    # The scores that step saw: the same weights, the same sampler state, run again.
    for tower, weights in zip(model.towers, before):
        tower.set_weights(weights)
    model.samplers[0].seed_generator.state.assign(state)
    out = model(None, training=True)
    scores = [_np(out[f"scores_{i}"]) for i in range(2)]
    labels = _np(out["labels_0"])
    assert all(s.dtype == np.float32 and s.shape == (config["batch_size"], config["n"])
               for s in scores)
    base_ref = [np.mean([ref.ranking_bce_torch(ref.neuralsort(s[k], config["tau"]),
                                               ref.true_permutation(labels[k]))
                         for k in range(len(s))]) for s in scores]
    np.testing.assert_allclose(logs["loss_0"], base_ref[0], rtol=1e-6)
    np.testing.assert_allclose(logs["base_loss_0"], base_ref[0], rtol=1e-6)
    np.testing.assert_allclose(logs["base_loss_1"], base_ref[1], rtol=1e-6)
    newton, _ = ranking.make_loss(config, "hessian")
    np.testing.assert_allclose(logs["loss_1"], float(newton(labels, scores[1])), rtol=1e-6)
    assert abs(logs["loss_1"] - logs["base_loss_1"]) > 1e-3  # a Newton loss, not the base
    np.testing.assert_allclose(logs["loss"], logs["loss_0"] + logs["loss_1"], rtol=1e-6)

    # The same weights in float32: scores a bfloat16 rounding away.
    keras.backend.clear_session()
    full = ranking_device.build_side_by_side(dict(config, mixed_precision=False), runs,
                                             train, ranking.make_loss)
    for tower, weights in zip(full.towers, before):
        tower.set_weights(weights)
    full.samplers[0].seed_generator.state.assign(state)
    out32 = full(None, training=True)
    np.testing.assert_array_equal(_np(out32["labels_0"]), labels)
    s32 = _np(out32["scores_0"])
    rel = np.max(np.abs(s32 - scores[0])) / np.max(np.abs(s32))
    assert 1e-4 < rel < 5e-2, rel


# -- 6. time budget -------------------------------------------------------------------------

def test_time_budget_stops_after_the_first_chunk(mnist, quick_device_config):
    config = ranking.validate_config(dict(quick_device_config, time_budget_s=1e-6))
    assert config["steps"] > config["eval_every"]
    record, = ranking_device.train_side_by_side(mnist, config, [RUNS[0]], ranking.make_loss,
                                                progress=False)
    # The same run without a budget (a single compiled run is reproducible bit for bit).
    full, = ranking_device.train_side_by_side(mnist, quick_device_config, [RUNS[0]],
                                              ranking.make_loss, progress=False)
    assert full["steps_done"] == config["steps"]
    assert len(full["curve"]["step"]) == config["steps"] // config["eval_every"]
    assert record["steps_done"] == config["eval_every"]
    assert set(record) == set(full)
    assert set(record["curve"]) == set(full["curve"])
    for key, values in record["curve"].items():
        assert values == full["curve"][key][:1], key  # the first chunk, and only it
    assert record["best_step"] == config["eval_every"]
    assert record["test_exact_match"] == record["curve"]["test_exact_match"][0]
    assert record["test_elementwise"] == record["curve"]["test_elementwise"][0]
    assert record["best_val_exact_match"] == record["curve"]["val_exact_match"][0]
    assert record["runs_side_by_side"] == 1 and record["diverged"] is False
    assert record["tikhonov"] == full["tikhonov"]


# -- 7. the command line --------------------------------------------------------------------

def _error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("keras-newton: error: "), err
    assert "Traceback" not in err
    return lines[0][len("keras-newton: error: "):]


# The quick bench's 8 evaluation sets give equal accuracies over seeds: the summary's Welch
# test warns about it (scipy), which is not what this test is about.
@pytest.mark.filterwarnings("ignore:Precision loss occurred in moment calculation")
def test_cli_device_engine(tmp_path, capsys, quick_device_config, tf_eager_runs):
    out = tmp_path / "device"
    assert cli.main(["bench", "ranking", "--quick", "--engine", "device", "--out",
                     str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    config = quick_device_config
    assert results["config"]["engine"] == "device"
    for key in ("steps", "eval_every", "batch_size", "seeds", "variants", "validation_sets",
                "test_sets", "eval_batch_size", "learning_rate", "tikhonov", "n"):
        assert results["config"][key] == _record_json(config[key]), key
    runs = results["runs"]
    assert [(r["variant"], r["seed"]) for r in runs] == [(v, s) for v, _, s in RUNS]
    assert all(r["runs_side_by_side"] == len(RUNS) for r in runs)
    assert all(r["steps_done"] == config["steps"] for r in runs)
    assert "Device engine" in results["table"] and "Device engine" in printed
    assert "Device engine" in (out / "table.txt").read_text()
    assert f"{len(RUNS)} runs side by side" in results["table"]
    # The command's runs (compiled TensorFlow, side by side) are the runs trained one by
    # one, up to TensorFlow's graph rounding amplified by Adam (see the docstring, 3.): the
    # first point of the base-loss curve within rtol 1e-4 (observed <= 1e-6), the later
    # ones within 1e-3 (observed <= 2e-5). Each record reads its accuracies off its curve.
    for run, alone in zip(runs, _record_json(tf_eager_runs["alone"])):
        losses, expected = run["curve"]["base_loss"], alone["curve"]["base_loss"]
        np.testing.assert_allclose(losses[0], expected[0], rtol=1e-4)
        np.testing.assert_allclose(losses, expected, rtol=1e-3)
        assert run["curve"]["step"] == alone["curve"]["step"]
        assert run["tikhonov"] == alone["tikhonov"]
        best = run["curve"]["step"].index(run["best_step"])
        assert run["best_val_exact_match"] == max(run["curve"]["val_exact_match"]) == \
            run["curve"]["val_exact_match"][best]
        assert run["curve"]["val_exact_match"].index(run["best_val_exact_match"]) == best
        assert run["test_exact_match"] == run["curve"]["test_exact_match"][best]
        assert run["test_elementwise"] == run["curve"]["test_elementwise"][best]


def test_cli_device_engine_resume_trains_only_the_missing_runs(tmp_path, capsys):
    """``--resume`` after an interrupted device-engine command: the stored runs are kept as
    they are, the missing ones are trained side by side (only they), and each is the run
    the first command trained (same seed and settings; up to TensorFlow's graph rounding,
    as in 3.)."""
    out = tmp_path / "device"
    argv = ["bench", "ranking", "--quick", "--engine", "device", "--out", str(out)]
    assert cli.main(argv) == 0
    path = out / "results.json"
    first = json.loads(path.read_text())
    kept = first["runs"][:4]
    partial = dict(first, runs=kept, status="interrupted")
    for key in ("summary", "table"):
        partial.pop(key, None)
    path.write_text(json.dumps(partial))
    capsys.readouterr()
    assert cli.main(argv + ["--resume"]) == 0
    printed = capsys.readouterr().out
    assert "4 run(s) in results.json, not run again" in printed
    resumed = json.loads(path.read_text())
    assert resumed["status"] == "complete"
    assert resumed["runs"][:4] == kept
    for run, original in zip(resumed["runs"][4:], first["runs"][4:]):
        assert (run["variant"], run["seed"]) == (original["variant"], original["seed"])
        assert run["runs_side_by_side"] == 2
        np.testing.assert_allclose(run["curve"]["base_loss"], original["curve"]["base_loss"],
                                   rtol=1e-3)


@pytest.mark.parametrize("argv, names", [
    (["--time-budget", "5"], ("time_budget_s", "--time-budget", "--engine device")),
    (["--mixed-precision"], ("mixed_precision", "--mixed-precision", "--engine device")),
    (["--engine", "keras", "--mixed-precision"],
     ("mixed_precision", "--mixed-precision", "--engine device")),
    (["--engine", "gpu"], ("argument --engine", "'gpu'")),
])
def test_cli_device_options_need_the_device_engine(argv, names, tmp_path, capsys):
    out = tmp_path / "o"
    assert cli.main(["bench", "ranking", "--quick", *argv, "--out", str(out)]) == 2
    message = _error_line(capsys)
    for name in names:
        assert name in message, (name, message)
    assert not out.exists()  # stopped before --out, data or training


# -- 8. config validation -------------------------------------------------------------------

@pytest.mark.parametrize("overrides, match", [
    (dict(engine="gpu"), "engine must be one of"),
    (dict(engine="device", time_budget_s=0), "time_budget_s must be a positive"),
    (dict(engine="device", time_budget_s=-1), "time_budget_s must be a positive"),
    (dict(engine="device", time_budget_s=float("nan")), "time_budget_s must be a positive"),
    (dict(engine="device", time_budget_s=float("inf")), "time_budget_s must be a positive"),
    (dict(engine="device", time_budget_s=True), "time_budget_s must be a positive"),
    (dict(engine="device", time_budget_s="5"), "time_budget_s must be a positive"),
    (dict(time_budget_s=5.0), r"time_budget_s \(--time-budget\) needs engine='device'"),
    (dict(mixed_precision=True), r"mixed_precision \(--mixed-precision\) needs engine='device'"),
])
def test_validate_config_rejects(overrides, match):
    config = dict(ranking.make_config("quick"), **overrides)
    with pytest.raises(ValueError, match=match):
        ranking.validate_config(config)


def test_validate_config_accepts_device_settings():
    config = ranking.validate_config(dict(ranking.make_config("quick"), engine="device",
                                          time_budget_s=1e-6, mixed_precision=True))
    assert (config["engine"], config["time_budget_s"], config["mixed_precision"]) == (
        "device", 1e-6, True)
    assert ranking.validate_config(config) == config  # validating twice changes nothing


# -- 9. serialization -----------------------------------------------------------------------


def test_sampler_round_trips_through_keras_file(tmp_path):
    (x_train, y_train), _ = load_mnist("bundled", verbose=False)
    images, labels = x_train[:300], y_train[:300]
    sampler = FourDigitSampler(images, labels, n=3, batch_size=2, seed=5)
    inp = keras.Input((3, 4), dtype="int32")
    x, y = sampler(inp)
    model = keras.Model(inp, [x, y])
    idx = np.random.default_rng(0).integers(0, 300, (4, 3, 4)).astype("int32")
    before = model.predict(idx, verbose=0)
    path = str(tmp_path / "sampler.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    after = loaded.predict(idx, verbose=0)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    # The reference composition, in NumPy: the same numbers as the loaded model's.
    np.testing.assert_array_equal(
        after[1], (labels[idx] * np.array([1000, 100, 10, 1])).sum(-1).astype("float32"))
    twin = next(layer for layer in loaded.layers if isinstance(layer, FourDigitSampler))
    assert (twin.n, twin.batch_size, twin.seed, twin.num_images) == (3, 2, 5, 300)
    fresh = FourDigitSampler(images, labels, n=3, batch_size=2, seed=5)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(twin.draw_indices()),
                                  keras.ops.convert_to_numpy(fresh.draw_indices()))

"""keras-newton without TensorFlow: JAX runs the four-digit sets and the ranking bench.

Specification (README, "Backends"): on JAX and PyTorch nothing of ``import keras_newton``,
the four-digit MNIST pipeline (``four_digit_datasets``, whose default there is the NumPy
``keras.utils.PyDataset`` pipeline) or ``keras-newton bench ranking`` imports TensorFlow.
Each check runs in a new Python process with ``KERAS_BACKEND=jax`` whose import system
cannot see ``tensorflow`` (every finder of ``sys.meta_path`` wrapped to find nothing by
that name: ``import tensorflow`` raises ``ModuleNotFoundError``, so the process is what a
machine without TensorFlow sees, whether or not TensorFlow is installed here):

- the sets that process builds are checked against an independent NumPy composition (an
  item is the four digit images side by side, divided by 255; its number is the four
  labels' place values), the validation and test sets drawn with NumPy's generator as
  documented, the training indices against TensorFlow's ``stateless_uniform`` values
  (known answers, so no TensorFlow is needed to check them);
- ``keras-newton bench ranking --quick`` finishes on a tiny generated MNIST;
- so does ``benchmarks/table1_device.py --tiny`` (the prepared GPU command of
  docs/reproducing.md in its CPU configuration), with the diffsort protocol's selection.

Where TensorFlow is installed, the NumPy pipeline must equal the ``tf.data`` pipeline bit
for bit (the TensorFlow backend keeps ``tf.data``; a seed means the same sets everywhere).
Skips without JAX. Reads no real MNIST.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_JAX = importlib.util.find_spec("jax") is not None
needs_jax = pytest.mark.skipif(not HAVE_JAX, reason="jax is not installed")

# Prepended to every child: TensorFlow cannot be imported, as on a machine without it.
BLOCK_TENSORFLOW = r"""
import sys

HIDDEN = ("tensorflow", "tensorflow_datasets", "tf_keras")


class WithoutTensorFlow:
    # A finder of sys.meta_path that does not see TensorFlow: `import tensorflow` raises
    # ModuleNotFoundError and importlib.util.find_spec("tensorflow") is None, as on a
    # machine without it.
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return None
        find = getattr(self.finder, "find_spec", None)
        return None if find is None else find(name, path, target)

    def __getattr__(self, attribute):
        return getattr(self.finder, attribute)


sys.meta_path[:] = [WithoutTensorFlow(finder) for finder in sys.meta_path]


def tensorflow_modules():
    return sorted(m for m in sys.modules if m.split(".")[0] in HIDDEN)
"""

# tf.random.stateless_uniform(shape, seed, minval=0, maxval, dtype=tf.int64), TensorFlow
# 2.21 on CPU: (seed, shape, maxval, values).
KNOWN_DRAWS = [
    ((0, 0), (8,), 10000, [8894, 3386, 8774, 2400, 2791, 716, 2897, 7232]),
    ((2, 5), (3, 2, 4), 55, [9, 18, 39, 5, 8, 27, 19, 54, 11, 15, 20, 52, 39, 35, 17, 6, 5,
                             3, 36, 34, 28, 25, 6, 16]),
    ((123456789, 2**33 + 7), (5,), 2**40 + 3,
     [457287772079, 605668011105, 757185849264, 220205446923, 529177196895]),
    ((-1, 1), (3,), 9, [0, 6, 0]),
]

N, BATCH, VAL_SETS, TEST_SETS, EVAL_BATCH, SEED, STEPS = 3, 4, 5, 7, 3, 2, 3
# The image indices of training batches 0 and 1 of `train_dataset` (tf.data) for the sets
# below (n 3, batch 4, seed 2, 220 training images): stateless_uniform((4, 3, 4),
# seed=(2, step), maxval=220), TensorFlow 2.21.
TRAIN_DRAWS = [
    [67, 147, 158, 200, 156, 45, 139, 139, 132, 95, 194, 177, 64, 123, 91, 156, 132, 71, 91,
     206, 45, 161, 94, 70, 40, 69, 66, 156, 88, 134, 39, 179, 138, 185, 157, 207, 22, 141,
     199, 194, 3, 195, 84, 17, 210, 200, 210, 119],
    [19, 173, 65, 108, 203, 135, 218, 172, 124, 63, 95, 98, 114, 208, 124, 194, 105, 19, 197,
     130, 170, 149, 79, 58, 6, 162, 72, 122, 139, 161, 173, 162, 67, 193, 13, 19, 165, 157,
     175, 0, 193, 122, 163, 14, 64, 46, 147, 79],
]


def _fake_mnist(path, rng, n_train=240, n_test=60):
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
              "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "y_test": rng.integers(0, 10, n_test).astype(np.uint8)}
    np.savez(path, **arrays)
    return arrays


def _run_child(code, tmp_path, args=(), timeout=300):
    """Runs ``code`` (after `BLOCK_TENSORFLOW`) on JAX; returns its last line's JSON."""
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               TF_CPP_MIN_LOG_LEVEL="2", KERAS_HOME=str(tmp_path / "keras_home"))
    env.pop("KERAS_NEWTON_MNIST", None)
    proc = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW + code, *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-6000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


# The child: builds the sets with the default pipeline and saves them.
SETS_CHILD = r"""
import json
import keras
import numpy as np
import keras_newton
from keras_newton.datasets import four_digit, four_digit_datasets

data, out, known = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
N, BATCH, VAL_SETS, TEST_SETS, EVAL_BATCH, SEED, STEPS = json.loads(sys.argv[4])
with np.load(data) as f:
    mnist = (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
train, val, test = four_digit_datasets(mnist, N, batch_size=BATCH,
                                       num_validation_sets=VAL_SETS,
                                       num_test_sets=TEST_SETS, eval_batch_size=EVAL_BATCH,
                                       seed=SEED)
saved = {}
iterator = iter(train)
for step in range(STEPS):
    saved[f"train_x{step}"], saved[f"train_y{step}"] = next(iterator)
    n_train = len(four_digit.split_mnist(mnist)["train"][0])
    saved[f"train_idx{step}"] = four_digit.train_indices(n_train, N, BATCH, SEED, step)
for name, sets in (("val", val), ("test", test)):
    for i, (x, y) in enumerate(sets):
        saved[f"{name}_x{i}"], saved[f"{name}_y{i}"] = x, y
np.savez(out, **saved)
draws = [four_digit.stateless_uniform_indices(shape, seed, maxval).reshape(-1).tolist()
         for seed, shape, maxval, _ in known]
print(json.dumps({"backend": keras.backend.backend(), "draws": draws,
                  "py_datasets": [isinstance(d, keras.utils.PyDataset)
                                  for d in (train, val, test)],
                  "tensorflow": tensorflow_modules()}))
"""


def _items(images, labels, indices):
    """Independent composition: ``indices (..., 4)`` -> images side by side and numbers."""
    flat = indices.reshape(-1, 4)
    x = np.stack([np.concatenate([images[i] for i in row], axis=1) for row in flat])
    x = (x.astype(np.float32) / np.float32(255.0)).reshape(indices.shape[:-1] + (28, 112))
    y = np.array([int("".join(str(int(labels[i])) for i in row)) for row in flat],
                 np.float32).reshape(indices.shape[:-1])
    return x, y


@needs_jax
def test_four_digit_sets_on_jax_without_tensorflow(tmp_path):
    arrays = _fake_mnist(tmp_path / "mnist.npz", np.random.default_rng(7))
    args = [str(tmp_path / "mnist.npz"), str(tmp_path / "sets.npz"),
            json.dumps([[list(s), list(sh), m, v] for s, sh, m, v in KNOWN_DRAWS]),
            json.dumps([N, BATCH, VAL_SETS, TEST_SETS, EVAL_BATCH, SEED, STEPS])]
    report = _run_child(SETS_CHILD, tmp_path, args)
    assert report["backend"] == "jax"
    assert report["tensorflow"] == []
    assert report["py_datasets"] == [True, True, True]
    # TensorFlow's stateless draws, reproduced without TensorFlow.
    for (_, _, _, values), got in zip(KNOWN_DRAWS, report["draws"]):
        assert got == values

    sets = np.load(tmp_path / "sets.npz")
    # The 55k / 5k protocol, in proportion: the last 240 / 12 = 20 training images validate.
    cut = 240 - 20
    x_tr, y_tr = arrays["x_train"][:cut], arrays["y_train"][:cut]
    x_va, y_va = arrays["x_train"][cut:], arrays["y_train"][cut:]
    x_te, y_te = arrays["x_test"], arrays["y_test"]
    steps = []
    for step in range(STEPS):
        idx = sets[f"train_idx{step}"]  # the child's four_digit.train_indices
        assert idx.shape == (BATCH, N, 4) and idx.min() >= 0 and idx.max() < cut
        if step < len(TRAIN_DRAWS):  # the tf.data pipeline's draws
            assert idx.reshape(-1).tolist() == TRAIN_DRAWS[step]
        x, y = _items(x_tr, y_tr, idx)
        assert sets[f"train_x{step}"].dtype == np.float32
        np.testing.assert_array_equal(sets[f"train_x{step}"], x)
        np.testing.assert_array_equal(sets[f"train_y{step}"], y)
        steps.append(y)
    assert not np.array_equal(steps[0], steps[1])  # fresh sets every step
    for name, (images, labels), num_sets, seed in (("val", (x_va, y_va), VAL_SETS, 0),
                                                   ("test", (x_te, y_te), TEST_SETS, 1)):
        idx = np.random.default_rng(seed).integers(0, len(images), size=(num_sets, N, 4),
                                                   dtype=np.int64)
        x, y = _items(images, labels, idx)
        batches = range(-(-num_sets // EVAL_BATCH))
        assert f"{name}_x{len(batches)}" not in sets.files
        got_x = np.concatenate([sets[f"{name}_x{i}"] for i in batches])
        got_y = np.concatenate([sets[f"{name}_y{i}"] for i in batches])
        np.testing.assert_array_equal(got_x, x)
        np.testing.assert_array_equal(got_y, y)


# The child: the ranking bench's quick run (one seed, the baseline and a Newton loss), on
# the tiny MNIST, through the command line.
BENCH_CHILD = r"""
import json
from keras_newton.app import cli

code = cli.main(["bench", "ranking", "--quick", "--seeds", "0", "--variants",
                 "baseline,hessian", "--data", sys.argv[1], "--out", sys.argv[2]])
print(json.dumps({"code": code, "tensorflow": tensorflow_modules()}))
"""


@needs_jax
def test_bench_ranking_quick_on_jax_without_tensorflow(tmp_path):
    _fake_mnist(tmp_path / "mnist.npz", np.random.default_rng(8))
    out = tmp_path / "ranking"
    report = _run_child(BENCH_CHILD, tmp_path, [str(tmp_path / "mnist.npz"), str(out)])
    assert report["code"] == 0 and report["tensorflow"] == []
    with open(out / "results.json") as f:
        results = json.load(f)
    assert results["status"] == "complete"
    assert results["environment"]["backend"] == "jax" and "jax" in results["environment"]
    assert "tensorflow" not in results["environment"]
    assert [r["variant"] for r in results["runs"]] == ["baseline", "hessian"]
    for run in results["runs"]:
        assert 0.0 <= run["test_elementwise"] <= 1.0


# The prepared GPU command's script (docs/reproducing.md), tiny configuration.
TABLE1_CHILD = r"""
import json
import runpy

sys.argv = ["table1_device.py", "--tiny", "--data", sys.argv[1], "--out", sys.argv[2]]
try:
    runpy.run_path("benchmarks/table1_device.py", run_name="__main__")
    code = 0
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "tensorflow": tensorflow_modules()}))
"""


@needs_jax
def test_table1_device_script_tiny_without_tensorflow(tmp_path):
    """``benchmarks/table1_device.py --tiny`` (the GPU command's CPU configuration) runs
    without TensorFlow and writes both set sizes' results by the diffsort protocol: every
    run's test accuracy is its curve's test value at its best validation step, and
    ``table.txt`` sets the paper's numbers beside ours."""
    _fake_mnist(tmp_path / "mnist.npz", np.random.default_rng(9))
    out = tmp_path / "table1"
    report = _run_child(TABLE1_CHILD, tmp_path, [str(tmp_path / "mnist.npz"), str(out)],
                        timeout=600)
    assert report["code"] == 0 and report["tensorflow"] == []
    with open(out / "results.json") as f:
        record = json.load(f)
    assert sorted(record["results"]) == ["n10", "n5"]
    table = (out / "table.txt").read_text()
    for key, results in record["results"].items():
        config = results["config"]
        assert config["engine"] == "device" and config["mixed_precision"] is True
        assert config["n"] == int(key[1:]) and config["relaxation"] == "neuralsort"
        runs = results["runs"]
        assert sorted((r["variant"], r["seed"]) for r in runs) == sorted(
            (v, s) for v in ("baseline", "hessian", "fisher") for s in config["seeds"])
        for run in runs:
            curve = run["curve"]
            assert run["steps_done"] == config["steps"] == curve["step"][-1]
            assert run["runs_side_by_side"] == len(runs)
            best = int(np.argmax(curve["val_select"]))  # the first of equal bests
            assert run["best_step"] == curve["step"][best]
            assert run["test_exact_match"] == curve["test_exact_match"][best]
        for variant, value in record["paper"][key[1:]].items():
            assert f"{value:.2f}" in table, (variant, value)


# -- where TensorFlow is installed: the two pipelines agree -------------------------------


def test_numpy_pipeline_equals_tf_data(rng):
    """The NumPy pipeline (any backend) gives the tf.data pipeline's arrays, bit for bit."""
    tf = pytest.importorskip("tensorflow")
    from keras_newton.datasets import four_digit

    for seed, shape, maxval, values in KNOWN_DRAWS:
        got = tf.random.stateless_uniform(shape, seed=tf.constant(seed, tf.int64), minval=0,
                                          maxval=maxval, dtype=tf.int64).numpy()
        assert got.reshape(-1).tolist() == values  # the known answers hold here
    for seed, step, shape, maxval in ((0, 0, (10, 5, 4), 55000), (3, 2**31 + 5, (7,), 1),
                                      (2**40, 17, (3, 9, 4), 12345), (5, 1, (100, 3, 4), 9)):
        expected = tf.random.stateless_uniform(
            shape, seed=tf.constant([seed, step], tf.int64), minval=0, maxval=maxval,
            dtype=tf.int64).numpy()
        np.testing.assert_array_equal(
            four_digit.stateless_uniform_indices(shape, (seed, step), maxval), expected)

    mnist = ((rng.integers(0, 256, (300, 28, 28), dtype=np.uint8), rng.integers(0, 10, 300)),
             (rng.integers(0, 256, (60, 28, 28), dtype=np.uint8), rng.integers(0, 10, 60)))
    kwargs = dict(batch_size=4, num_validation_sets=7, num_test_sets=9, eval_batch_size=3,
                  seed=3)
    tf_sets = four_digit.four_digit_datasets(mnist, 5, pipeline="tf.data", **kwargs)
    np_sets = four_digit.four_digit_datasets(mnist, 5, pipeline="numpy", **kwargs)
    assert isinstance(tf_sets[0], tf.data.Dataset)
    for step, (x, y) in enumerate(tf_sets[0].take(5).as_numpy_iterator()):
        np.testing.assert_array_equal(np_sets[0][step][0], x)
        np.testing.assert_array_equal(np_sets[0][step][1], y)
    for tf_eval, np_eval in zip(tf_sets[1:], np_sets[1:]):
        expected = list(tf_eval.as_numpy_iterator())
        assert len(np_eval) == len(expected)
        for (x, y), (ex, ey) in zip(np_eval, expected):
            np.testing.assert_array_equal(x, ex)
            np.testing.assert_array_equal(y, ey)
    # "auto" is tf.data on this (TensorFlow) backend: the benches' numbers are unchanged.
    import keras

    if keras.backend.backend() == "tensorflow":
        auto = four_digit.four_digit_datasets(mnist, 5, **kwargs)
        assert all(isinstance(d, tf.data.Dataset) for d in auto)
    with pytest.raises(ValueError, match="pipeline"):
        four_digit.four_digit_datasets(mnist, 5, pipeline="torch", **kwargs)

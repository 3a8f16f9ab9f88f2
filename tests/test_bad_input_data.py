"""Bad input, data rows: the loaders and the command line refuse bad data and bad arguments
with one clear error.

- `read_warcraft_arrays` / `load_warcraft` on a truncated, garbage, empty or ``.npz``
  ``.npy`` file, on vertex weights that are NaN, infinite or negative, on shortest paths
  with a value other than 0 and 1, or on an empty training split: a ValueError naming the
  file (and what was expected).
- `load_mnist` on an ``.npz`` with an empty split: a ValueError naming the file.
- ``keras-newton data warcraft --n-train -1``, ``export ranker --model missing.keras``,
  ``bench ranking --seeds ,`` and their neighbours: one line ``keras-newton: error: ...``
  on stderr naming the argument, exit status 2, no traceback; those decided by the
  arguments alone are answered without Keras (fast).
"""

import io
import os
import re
import subprocess
import zipfile

import numpy as np
import pytest

from keras_newton.app import cli
from keras_newton.datasets import load_mnist, load_warcraft, read_warcraft_arrays
from test_cli_contract import ENV, REPO, _command, _error_line

GRID = 2
SPLITS = ("train", "val", "test")
STEMS = {"maps": "maps", "weights": "vertex_weights", "paths": "shortest_paths"}


def _write_warcraft(folder, n=(4, 2, 2), grid=GRID):
    """A small valid Warcraft folder (``grid`` x ``grid`` maps); returns it."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, count in zip(SPLITS, n):
        paths = np.zeros((count, grid, grid), np.uint8)
        paths[:, np.arange(grid), np.arange(grid)] = 1  # the diagonal
        np.save(os.path.join(folder, f"{split}_maps.npy"),
                rng.integers(0, 256, (count, 8 * grid, 8 * grid, 3), dtype=np.uint8))
        np.save(os.path.join(folder, f"{split}_vertex_weights.npy"),
                rng.choice([0.8, 1.2, 5.3], (count, grid, grid)).astype(np.float16))
        np.save(os.path.join(folder, f"{split}_shortest_paths.npy"), paths)
    return str(folder)


def _file(folder, split, key):
    return os.path.join(folder, f"{split}_{STEMS[key]}.npy")


def _raises_naming(file, *patterns):
    """``pytest.raises(ValueError)`` whose message names ``file`` and matches ``patterns``."""
    return pytest.raises(ValueError, match=re.escape(repr(file)) + ".*" + ".*".join(patterns))


@pytest.fixture
def warcraft(tmp_path):
    return _write_warcraft(tmp_path / "warcraft")


# -- load_warcraft: unreadable files --------------------------------------------------------

def _truncate(file):
    data = open(file, "rb").read()
    with open(file, "wb") as f:
        f.write(data[: len(data) - 40])


def _header_only(file):
    data = open(file, "rb").read()
    with open(file, "wb") as f:
        f.write(data[:30])


def _garbage(file):
    with open(file, "wb") as f:
        f.write(np.random.default_rng(1).bytes(300))


def _empty(file):
    open(file, "wb").close()


@pytest.mark.parametrize("damage", [_truncate, _header_only, _garbage, _empty])
@pytest.mark.parametrize("split, key", [("train", "maps"), ("val", "weights"),
                                        ("test", "paths")])
@pytest.mark.parametrize("mmap", [False, True])
def test_unreadable_npy_names_the_file(warcraft, damage, split, key, mmap):
    file = _file(warcraft, split, key)
    damage(file)
    with _raises_naming(file, "not a readable .npy array"):
        read_warcraft_arrays(warcraft, grid=GRID, mmap=mmap)


def test_load_warcraft_names_a_truncated_file(warcraft):
    file = _file(warcraft, "train", "maps")
    _truncate(file)
    with _raises_naming(file, "not a readable .npy array", "truncated"):
        load_warcraft(warcraft, grid=GRID)


def test_npz_and_pickled_files_are_refused(warcraft):
    file = _file(warcraft, "val", "maps")
    buffer = io.BytesIO()
    np.savez(buffer, maps=np.zeros((2, 16, 16, 3), np.uint8))
    with open(file, "wb") as f:
        f.write(buffer.getvalue())
    with _raises_naming(file, r"is an \.npz archive; expected one \.npy array"):
        read_warcraft_arrays(warcraft, grid=GRID)
    np.save(file, np.array([{"a": 1}] * 2, dtype=object), allow_pickle=True)
    with _raises_naming(file, "not a readable .npy array"):
        read_warcraft_arrays(warcraft, grid=GRID)


# -- load_warcraft: values ------------------------------------------------------------------

@pytest.mark.parametrize("bad, found", [(np.nan, "NaN"), (-1.0, "-1.0"), (np.inf, "inf"),
                                        (-np.inf, "-inf")])
@pytest.mark.parametrize("mmap", [False, True])
def test_weights_must_be_finite_and_non_negative(warcraft, bad, found, mmap):
    file = _file(warcraft, "val", "weights")
    weights = np.load(file)
    weights[1, 0, 1] = bad
    np.save(file, weights)
    with _raises_naming(file, "vertex weights must be finite and non-negative",
                        re.escape(f"found {found} (map 1, cell (0, 1))")):
        read_warcraft_arrays(warcraft, grid=GRID, mmap=mmap)


def test_load_warcraft_refuses_nan_weights(warcraft):
    file = _file(warcraft, "train", "weights")
    weights = np.load(file)
    weights[0, 1, 1] = np.nan
    np.save(file, weights)
    with _raises_naming(file, "vertex weights must be finite and non-negative; found NaN"):
        load_warcraft(warcraft, grid=GRID)


@pytest.mark.parametrize("dtype, bad, found", [(np.uint8, 2, "2"), (np.int64, -1, "-1"),
                                               (np.float32, 0.5, "0.5"),
                                               (np.float32, np.nan, "NaN")])
def test_paths_must_be_zero_or_one(warcraft, dtype, bad, found):
    file = _file(warcraft, "test", "paths")
    paths = np.load(file).astype(dtype)
    paths[1, 1, 0] = bad
    np.save(file, paths)
    with _raises_naming(file, "shortest paths must be 0 or 1 in every cell",
                        re.escape(f"found {found} (map 1, cell (1, 0))")):
        read_warcraft_arrays(warcraft, grid=GRID)


@pytest.mark.parametrize("key, array, message", [
    ("maps", np.full((4, 16, 16, 3), "x"), "maps must be pixel values"),
    ("weights", np.full((4, 2, 2), "1"), "vertex weights must be real numbers"),
    ("paths", np.full((4, 2, 2), 1 + 0j), "shortest paths must be 0/1 masks"),
])
def test_wrong_dtypes_are_refused(warcraft, key, array, message):
    file = _file(warcraft, "train", key)
    np.save(file, array)
    with _raises_naming(file, message, "found dtype"):
        read_warcraft_arrays(warcraft, grid=GRID)


def test_wrong_shapes_and_an_empty_training_split_name_the_file(tmp_path):
    folder = _write_warcraft(tmp_path / "w")
    file = _file(folder, "val", "weights")
    np.save(file, np.ones((3, GRID, GRID), np.float16))  # 2 maps, 3 weight grids
    with _raises_naming(file, re.escape("has shape (3, 2, 2); expected (2, 2, 2)")):
        read_warcraft_arrays(folder, grid=GRID)
    empty = _write_warcraft(tmp_path / "empty", n=(0, 2, 2))
    with _raises_naming(_file(empty, "train", "maps"), "holds no maps"):
        read_warcraft_arrays(empty, grid=GRID)


def test_good_files_still_load_with_any_mask_dtype(warcraft):
    for dtype in (bool, np.float32, np.int64):
        file = _file(warcraft, "test", "paths")
        np.save(file, np.load(file).astype(dtype))
        arrays = read_warcraft_arrays(warcraft, grid=GRID)
        assert arrays["test"]["paths"].dtype == dtype
    np.save(_file(warcraft, "val", "weights"), np.zeros((2, GRID, GRID), np.int32))
    data = load_warcraft(warcraft, grid=GRID, batch_size=2)
    assert len(data.arrays["val"]["maps"]) == 2


# -- load_mnist: an empty split -------------------------------------------------------------

def _mnist_arrays(n_train=20, n_test=10):
    rng = np.random.default_rng(2)
    return {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
            "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            "y_test": rng.integers(0, 10, n_test).astype(np.uint8)}


@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_with_an_empty_split_is_refused(tmp_path, monkeypatch, split):
    arrays = _mnist_arrays(**{f"n_{split}": 0})
    path = str(tmp_path / "empty.npz")
    np.savez(path, **arrays)
    with _raises_naming(path, f"x_{split} holds no images"):
        load_mnist(path, verbose=False)
    monkeypatch.setenv("KERAS_NEWTON_MNIST", path)  # "auto" reads it: the same error
    with _raises_naming(path, f"x_{split} holds no images"):
        load_mnist(verbose=False)


def test_mnist_truncated_npz_names_the_file(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(path, **_mnist_arrays())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with _raises_naming(str(path), "not a readable .npz"):
        load_mnist(str(path), verbose=False)


def test_mnist_of_one_image_per_split_loads(tmp_path):
    path = str(tmp_path / "one.npz")
    np.savez(path, **_mnist_arrays(n_train=1, n_test=1))
    (x_train, _), (x_test, _) = load_mnist(path, verbose=False)
    assert len(x_train) == len(x_test) == 1


# -- the command line: one line, exit status 2 ----------------------------------------------

def _run_console(argv):
    """``keras-newton ARGV`` as a subprocess; checks the one-line error and returns it."""
    out = subprocess.run(_command(*argv), capture_output=True, text=True, cwd=REPO,
                         env=ENV, timeout=120)
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-newton: error: "), out.stderr
    return lines[0]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """Files that are not saved .keras models."""
    root = tmp_path_factory.mktemp("models")
    (root / "folder.keras").mkdir()
    (root / "model.txt").write_text("not a model")
    (root / "garbage.keras").write_bytes(np.random.default_rng(3).bytes(200))
    with zipfile.ZipFile(root / "other.keras", "w") as z:
        z.writestr("readme.txt", "a zip, not a Keras archive")
    with zipfile.ZipFile(root / "ok.keras", "w") as z:  # passes the checks without Keras
        z.writestr("config.json", "{}")
    (root / "afile").write_text("x")
    (root / "exists" / "1").mkdir(parents=True)
    return root


# (argv, words the error line must hold); {m}: model_files, {tmp}: a fresh folder.
CONSOLE_ERRORS = [
    # the rows
    (["data", "warcraft", "--n-train", "-1", "--out", "{tmp}/w"],
     ["--n-train", "must be an integer >= 1; received -1."]),
    (["export", "ranker", "--model", "missing.keras", "--out", "{tmp}/m/1"],
     ["--model must be a saved .keras file; 'missing.keras' does not exist."]),
    (["bench", "ranking", "--seeds", ","], ["--seeds", "empty item in ','"]),
    # data warcraft: every count
    (["data", "warcraft", "--n-train", "0", "--out", "{tmp}/w"], ["--n-train", "received 0"]),
    (["data", "warcraft", "--n-train", "1.5", "--out", "{tmp}/w"],
     ["--n-train", "'1.5' is not an integer"]),
    (["data", "warcraft", "--n-val", "-1", "--out", "{tmp}/w"],
     ["--n-val", "must be an integer >= 0; received -1."]),
    (["data", "warcraft", "--n-test", "-1", "--out", "{tmp}/w"],
     ["--n-test", "must be an integer >= 0; received -1."]),
    (["data", "warcraft", "--n-test", "x", "--out", "{tmp}/w"], ["--n-test", "'x'"]),
    (["data", "warcraft", "--grid", "1", "--out", "{tmp}/w"], ["--grid", "received 1"]),
    (["data", "warcraft", "--seed", "-1", "--out", "{tmp}/w"], ["--seed", "received -1"]),
    # export ranker: --model that is not a saved .keras file, --out that cannot be used
    (["export", "ranker", "--model", "{m}", "--out", "{tmp}/m/1"],
     ["--model", "is a directory"]),
    (["export", "ranker", "--model", "{m}/folder.keras", "--out", "{tmp}/m/1"],
     ["--model", "is a directory"]),
    (["export", "ranker", "--model", "{m}/model.txt", "--out", "{tmp}/m/1"],
     ["--model", "does not end in .keras"]),
    (["export", "ranker", "--model", "{m}/garbage.keras", "--out", "{tmp}/m/1"],
     ["--model", "not a zip archive"]),
    (["export", "ranker", "--model", "{m}/other.keras", "--out", "{tmp}/m/1"],
     ["--model", "without the config.json"]),
    (["export", "ranker", "--model", "{m}/ok.keras", "--out", "{m}/exists/1"],
     ["--out", "exists"]),
    (["export", "ranker", "--model", "{m}/ok.keras", "--out", "{m}/afile/ranker/1"],
     ["--out", "cannot be created", "is a file"]),
    (["export", "ranker", "--model", "{m}/ok.keras", "--out", "{tmp}/m/latest"],
     ["--out must end in an integer version folder"]),
    # --seeds and the other comma lists
    (["bench", "ranking", "--seeds", "1,,2"], ["--seeds", "empty item in '1,,2'"]),
    (["bench", "ranking", "--seeds", "a"], ["--seeds", "'a' is not an integer"]),
    (["bench", "ranking", "--seeds", "-1"], ["--seeds", "-1 is negative"]),
    (["bench", "ranking", "--seeds", ""], ["--seeds", "empty item in ''"]),
    (["bench", "ranking", "--seeds"], ["--seeds", "expected one argument"]),
    (["bench", "ranking", "--variants", ","], ["--variants", "empty item in ','"]),
    (["bench", "ranking", "--tikhonov", "0.1,,1"], ["--tikhonov", "empty item"]),
    (["bench", "ranking", "--tikhonov", "0.1,x"], ["--tikhonov", "'x' is not a number"]),
    (["bench", "shortest-path", "--samples", ","], ["--samples", "empty item in ','"]),
    (["bench", "shortest-path", "--samples", "3,a"], ["--samples", "'a' is not an integer"]),
    (["tune", "ranking", "--curvatures", "hessian,"], ["--curvatures", "empty item"]),
]


@pytest.mark.parametrize("argv, words", CONSOLE_ERRORS,
                         ids=[" ".join(a[:4]) for a, _ in CONSOLE_ERRORS])
def test_console_errors_are_one_line(argv, words, tmp_path, model_files):
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{m}", str(model_files)) for a in argv]
    line = _run_console(argv)
    for word in words:
        assert word in line, line
    assert not os.path.exists(tmp_path / "w") and not os.path.exists(tmp_path / "m")


# Errors found once the settings are put together, before any data is read (in process:
# Keras is loaded already).
SETTINGS_ERRORS = [
    (["bench", "ranking", "--quick", "--test-sets", "0"],
     "test_sets must be an integer >= 1; received 0."),
    (["bench", "ranking", "--quick", "--validation-sets", "-1"],
     "validation_sets must be an integer >= 1; received -1."),
    (["bench", "shortest-path", "--quick", "--n-train", "-1"],
     "n_train must be a positive integer; received -1."),
    (["bench", "shortest-path", "--quick", "--n-val", "0"],
     "n_val must be a positive integer; received 0."),
    (["bench", "shortest-path", "--quick", "--n-test", "-1"],
     "n_test must be a positive integer; received -1."),
    (["bench", "shortest-path", "--quick", "--samples", "0"],
     "samples must be a non-empty list of positive integers; received [0]."),
    (["bench", "ranking", "--quick", "--tau", "0"],
     "tau must be a positive finite number; received 0.0."),
    (["bench", "ranking", "--quick", "--learning-rate", "-1"],
     "learning_rate must be a positive finite number; received -1.0."),
    (["bench", "shortest-path", "--quick", "--sigma", "-1"],
     "sigma must be a positive finite number; received -1.0."),
    (["bench", "classification", "--quick", "--models", "M1,,M2"],
     "--models has an empty item in 'M1,,M2'; give names such as M1,M5."),
    (["tune", "ranking", "--quick", "--steps-per-epoch", "0"],
     "steps_per_epoch must be a positive integer; received 0."),
    (["tune", "ranking", "--quick", "--test-sets", "0"],
     "test_sets must be a positive integer; received 0."),
    (["tune", "ranking", "--quick", "--validation-sets", "-1"],
     "validation_sets must be a positive integer; received -1."),
    (["tune", "ranking", "--quick", "--seed", "-1"],
     "seed must be a non-negative integer; received -1."),
    (["tune", "ranking", "--quick", "--tuner", "hyperband", "--hyperband-factor", "1"],
     "hyperband_factor must be an integer >= 2; received 1."),
    (["tune", "shortest-path", "--quick", "--samples", "0"],
     "samples must be a positive integer; received 0."),
    (["tune", "shortest-path", "--quick", "--n-val", "0"],
     "n_val must be a positive integer; received 0."),
    (["tune", "classification", "--quick", "--validation", "0"],
     "validation must be a positive integer; received 0."),
]


@pytest.mark.parametrize("argv, message", SETTINGS_ERRORS,
                         ids=[" ".join(a) for a, _ in SETTINGS_ERRORS])
def test_bad_counts_are_one_line_errors(argv, message, tmp_path, capsys):
    assert cli.main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert _error_line(capsys) == message


def test_bench_shortest_path_refuses_bad_warcraft_files(tmp_path, capsys):
    data = _write_warcraft(tmp_path / "data", n=(4, 0, 2), grid=12)
    argv = ["bench", "shortest-path", "--quick", "--data", data]
    assert cli.main([*argv, "--out", str(tmp_path / "o1")]) == 2
    assert _error_line(capsys) == (f"warcraft data {data!r} has no val maps; the benchmark "
                                   "scores every run on them (give a val split of at least "
                                   "one map).")
    _write_warcraft(data, grid=12)
    file = _file(data, "train", "weights")
    weights = np.load(file)
    weights[2, 3, 4] = -5
    np.save(file, weights)
    assert cli.main([*argv, "--out", str(tmp_path / "o2")]) == 2
    assert _error_line(capsys) == (f"warcraft file {file!r}: vertex weights must be finite "
                                   "and non-negative; found -5.0 (map 2, cell (3, 4)).")

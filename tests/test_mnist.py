"""`load_mnist` (sources, validation, the bundled subset) and the Table 4 models."""

import os

import numpy as np
import pytest

from conftest import full_mnist_path
from keras_newton.datasets import mnist as mnist_module
from keras_newton.datasets.mnist import load_mnist

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Full MNIST comes from $KERAS_NEWTON_MNIST, read when the module is imported (the
# clean_env fixture below removes the variable for the tests of load_mnist's sources).
FULL_MNIST = full_mnist_path()
# The subset script's documented cut: 1000 train and 200 test digits of every class.
TRAIN_PER_CLASS, TEST_PER_CLASS = 1000, 200


def _fake_mnist(rng, n_train=30, n_test=20, label_dtype=np.uint8):
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(label_dtype),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(label_dtype),
    }


def _assert_equal_data(data, arrays):
    (x_train, y_train), (x_test, y_test) = data
    for name, got in (("x_train", x_train), ("y_train", y_train), ("x_test", x_test),
                      ("y_test", y_test)):
        np.testing.assert_array_equal(got, arrays[name])
        assert got.dtype == arrays[name].dtype, name


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No $KERAS_NEWTON_MNIST and an empty Keras home, whatever the machine has."""
    monkeypatch.delenv(mnist_module.ENV_VAR, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras_home"))
    return tmp_path


@pytest.mark.parametrize("label_dtype", [np.uint8, np.int64])
def test_npz_path_round_trip(clean_env, label_dtype):
    arrays = _fake_mnist(np.random.default_rng(0), label_dtype=label_dtype)
    path = clean_env / "mine.npz"
    np.savez(path, **arrays)
    _assert_equal_data(load_mnist(str(path), verbose=False), arrays)


def test_keras_cache_via_keras_home(clean_env, monkeypatch, capsys):
    arrays = _fake_mnist(np.random.default_rng(1))
    home = clean_env / "kh"
    (home / "datasets").mkdir(parents=True)
    np.savez_compressed(home / "datasets" / "mnist.npz", **arrays)
    monkeypatch.setenv("KERAS_HOME", str(home))
    _assert_equal_data(load_mnist("keras_cache", verbose=False), arrays)
    # "auto" prefers the Keras cache to the bundled subset, and says so.
    data, info = load_mnist("auto", verbose=True, return_source=True)
    _assert_equal_data(data, arrays)
    assert info["kind"] == "keras_cache"
    assert "Keras cache" in capsys.readouterr().out


def test_keras_cache_missing_is_clear(clean_env):
    with pytest.raises(FileNotFoundError, match="Keras cache"):
        load_mnist("keras_cache", verbose=False)


def test_auto_prefers_env_var_then_falls_back_to_bundled(clean_env, monkeypatch, capsys):
    arrays = _fake_mnist(np.random.default_rng(2))
    path = clean_env / "env.npz"
    np.savez(path, **arrays)
    monkeypatch.setenv(mnist_module.ENV_VAR, str(path))
    data, info = load_mnist(verbose=True, return_source=True)
    _assert_equal_data(data, arrays)
    assert info["kind"] == "env" and mnist_module.ENV_VAR in capsys.readouterr().out

    monkeypatch.delenv(mnist_module.ENV_VAR)
    data, info = load_mnist(verbose=True, return_source=True)
    assert info["kind"] == "bundled"
    assert "bundled" in capsys.readouterr().out
    _assert_equal_data(data, _bundled_arrays())

    monkeypatch.setenv(mnist_module.ENV_VAR, str(clean_env / "nope.npz"))
    with pytest.raises(FileNotFoundError, match=mnist_module.ENV_VAR):
        load_mnist(verbose=False)


def _bundled_arrays():
    with np.load(mnist_module.BUNDLED_PATH, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def test_bundled_subset_layout_and_balance():
    (x_train, y_train), (x_test, y_test) = load_mnist("bundled", verbose=False)
    assert x_train.shape == (10 * TRAIN_PER_CLASS, 28, 28) and x_train.dtype == np.uint8
    assert x_test.shape == (10 * TEST_PER_CLASS, 28, 28) and x_test.dtype == np.uint8
    assert y_train.shape == (10 * TRAIN_PER_CLASS,) and y_test.shape == (10 * TEST_PER_CLASS,)
    assert np.issubdtype(y_train.dtype, np.integer)
    np.testing.assert_array_equal(np.bincount(y_train, minlength=10), [TRAIN_PER_CLASS] * 10)
    np.testing.assert_array_equal(np.bincount(y_test, minlength=10), [TEST_PER_CLASS] * 10)
    assert os.path.getsize(mnist_module.BUNDLED_PATH) <= 3 * 2**20
    # Real digits, not noise: most pixels are background, ink reaches full intensity.
    assert 0.7 < np.mean(x_train == 0) < 0.9 and x_train.max() == 255


def test_bundled_subset_rows_are_full_mnist_rows():
    full_path = FULL_MNIST
    if full_path is None:
        pytest.skip("full MNIST not available: set KERAS_NEWTON_MNIST=/path/to/mnist.npz")
    sub = _bundled_arrays()
    with np.load(full_path, allow_pickle=False) as f:
        full = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    for split in ("train", "test"):
        idx = sub[f"{split}_indices"]
        assert np.all(np.diff(idx) > 0)  # distinct, original order
        np.testing.assert_array_equal(sub[f"x_{split}"], full[f"x_{split}"][idx])
        np.testing.assert_array_equal(sub[f"y_{split}"], full[f"y_{split}"][idx])
    # Independently of the stored indices: every subset image occurs in full MNIST.
    full_rows = {row.tobytes() for row in full["x_test"].reshape(len(full["x_test"]), -1)}
    assert all(row.tobytes() in full_rows for row in sub["x_test"].reshape(-1, 784))


def test_subset_script_is_deterministic(tmp_path):
    full_path = FULL_MNIST
    if full_path is None:
        pytest.skip("full MNIST not available: set KERAS_NEWTON_MNIST=/path/to/mnist.npz")
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_mnist_subset", os.path.join(REPO, "scripts", "make_mnist_subset.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    arrays = script.make_subset(full_path, train_per_class=5, test_per_class=3, seed=7)
    again = script.make_subset(full_path, train_per_class=5, test_per_class=3, seed=7)
    for k in arrays:
        np.testing.assert_array_equal(arrays[k], again[k])
    np.testing.assert_array_equal(np.bincount(arrays["y_train"], minlength=10), [5] * 10)
    # The committed subset is what the script makes with its defaults.
    bundled = _bundled_arrays()
    np.testing.assert_array_equal(
        bundled["test_indices"],
        script.make_subset(full_path)["test_indices"])


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda a: a.pop("y_test"), "lacks y_test"),
        (lambda a: a.update(x_train=a["x_train"].astype(np.float32)), "x_train must be uint8"),
        (lambda a: a.update(x_test=a["x_test"][:, :27]), r"x_test must have shape \(N, 28, 28\)"),
        (lambda a: a.update(y_train=a["y_train"][:-1]), "y_train must have shape"),
        (lambda a: a.update(y_train=a["y_train"].astype(np.float32)), "integer labels"),
        (lambda a: a.update(y_test=a["y_test"] + 10), "digits 0..9"),
    ],
)
def test_malformed_files_raise_clear_errors(clean_env, mutate, match):
    arrays = _fake_mnist(np.random.default_rng(3))
    mutate(arrays)
    path = clean_env / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match):
        load_mnist(str(path), verbose=False)


def test_unreadable_and_pickled_files_are_refused(clean_env):
    not_npz = clean_env / "text.npz"
    not_npz.write_text("hello")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_mnist(str(not_npz), verbose=False)
    arrays = _fake_mnist(np.random.default_rng(4))
    arrays["y_train"] = np.array([{"a": 1}] * 30, dtype=object)
    pickled = clean_env / "pickled.npz"
    np.savez(pickled, **arrays)
    with pytest.raises(ValueError, match="pickled"):
        load_mnist(str(pickled), verbose=False)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_mnist(str(clean_env / "missing.npz"), verbose=False)
    with pytest.raises(ValueError, match="source must be"):
        load_mnist("bundeled", verbose=False)
    with pytest.raises(TypeError, match="source must be"):
        load_mnist(3, verbose=False)


def test_download_offline_error_is_clear(clean_env, monkeypatch):
    import keras

    def offline():
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(RuntimeError, match="bundled"):
        load_mnist("download", verbose=False)


# -- the models of Table 4 -------------------------------------------------------------


def _mlp_params(width, depth=5, inputs=784, classes=10):
    return inputs * width + width + (depth - 1) * (width * width + width) + width * classes \
        + classes


# LeNet-5: c1 5*5*1*6+6, c3 5*5*6*16+16, c5 5*5*16*120+120, f6 120*84+84, out 84*10+10.
LENET5_PARAMS = (5 * 5 * 6 + 6) + (5 * 5 * 6 * 16 + 16) + (5 * 5 * 16 * 120 + 120) \
    + (120 * 84 + 84) + (84 * 10 + 10)


@pytest.mark.parametrize("name, params", [
    ("M1", _mlp_params(100)), ("M2", _mlp_params(400)), ("M3", _mlp_params(1600)),
    ("M4", LENET5_PARAMS), ("M5", LENET5_PARAMS),
])
def test_model_parameter_counts_and_output_shape(name, params):
    from keras_newton.models import classification_model

    model = classification_model(name)
    assert model.count_params() == params
    out = model(np.zeros((3, 28, 28), np.uint8))
    assert tuple(out.shape) == (3, 10)


def test_model_forward_matches_numpy():
    """M1 and M5 against a float64 numpy forward pass from the same weights."""
    from keras_newton.models import classification_model

    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (4, 28, 28)).astype(np.uint8)

    m1 = classification_model("M1")
    h = x.reshape(4, -1).astype(np.float64) / 255.0
    dense = [w.numpy().astype(np.float64) for w in m1.weights]
    for i in range(0, len(dense), 2):
        h = h @ dense[i] + dense[i + 1]
        if i < len(dense) - 2:
            h = np.maximum(h, 0.0)
    np.testing.assert_allclose(np.asarray(m1(x)), h, rtol=1e-4, atol=1e-5)

    m4 = classification_model("M4")
    w = {v.path.split("/")[0] + "/" + v.name: v.numpy().astype(np.float64)
         for v in m4.weights}

    def sigmoid(z):
        return 1.0 / (1.0 + np.exp(-z))

    def conv_valid(img, kernel, bias):  # img (H, W, C), kernel (5, 5, C, F)
        hh, ww = img.shape[0] - 4, img.shape[1] - 4
        out = np.zeros((hh, ww, kernel.shape[-1]))
        for i in range(hh):
            for j in range(ww):
                out[i, j] = np.tensordot(img[i:i + 5, j:j + 5], kernel, axes=3)
        return out + bias

    def avg_pool(img):
        return img.reshape(img.shape[0] // 2, 2, img.shape[1] // 2, 2, -1).mean(axis=(1, 3))

    expected = []
    for image in x:
        a = np.pad(image.astype(np.float64)[..., None] / 255.0, ((2, 2), (2, 2), (0, 0)))
        a = avg_pool(sigmoid(conv_valid(a, w["c1/kernel"], w["c1/bias"])))
        a = avg_pool(sigmoid(conv_valid(a, w["c3/kernel"], w["c3/bias"])))
        a = sigmoid(conv_valid(a, w["c5/kernel"], w["c5/bias"])).reshape(-1)
        a = sigmoid(a @ w["f6/kernel"] + w["f6/bias"])
        expected.append(a @ w["logits/kernel"] + w["logits/bias"])
    np.testing.assert_allclose(np.asarray(m4(x)), np.array(expected), rtol=1e-4, atol=1e-5)


def test_model_builders_reject_bad_arguments():
    from keras_newton.models import classification_model, lenet5, mlp

    with pytest.raises(ValueError, match="M1, M2, M3, M4, M5"):
        classification_model("M6")
    with pytest.raises(ValueError, match="width"):
        mlp(0)
    with pytest.raises(TypeError, match="depth must be a positive integer; received 1.5"):
        mlp(10, depth=1.5)
    with pytest.raises(ValueError):
        lenet5("no_such_activation")
    # rescale=False: the model takes inputs already in [0, 1].
    x = np.random.default_rng(6).integers(0, 256, (2, 28, 28)).astype(np.float32)
    a, b = mlp(8, rescale=True), mlp(8, rescale=False)
    b.set_weights(a.get_weights())
    np.testing.assert_allclose(np.asarray(a(x)), np.asarray(b(x / 255.0)), rtol=1e-5,
                               atol=1e-6)

"""The keras-io-style scripts in examples/, each run in its ``--quick`` mode.

Each script is loaded from its file and its ``main(argv)`` is called in this process (one
TensorFlow import for all five, instead of five subprocesses). Their results must satisfy
relations that hold whatever the tiny training did:

- quickstart: ``NewtonLoss(curvature="identity")`` trains exactly like the base loss
  (paper Theorem 2): same test cross-entropy and accuracy;
- ranking: exact match <= element-wise accuracy (a set in the right order has every
  position right); the saved ranker reloads with its Newton loss, here and in a fresh
  process that only imports keras_newton (same scores);
- shortest paths: perfect match <= optimal cost (the true path is optimal), cost ratio >= 1;
- tuning: the best model reproduces the best trial's validation accuracy, also when loaded
  in a fresh process that only imports keras_newton;
- serving: the exported SavedModel reproduces the Keras model's scores.
"""

import importlib.util
import os

import keras
import numpy as np
import pytest

from fresh_process import load_in_fresh_process

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                  os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_has_a_quick_mode():
    scripts = sorted(f[:-3] for f in os.listdir(EXAMPLES) if f.endswith(".py"))
    assert scripts == ["quickstart", "ranking", "serving", "shortest_paths", "tuning"]
    for name in scripts:
        with open(os.path.join(EXAMPLES, f"{name}.py")) as f:
            text = f.read()
        assert text.startswith('"""\nTitle: ') and "--quick" in text


def test_quickstart(capsys):
    results = _load("quickstart").main(["--quick"])
    base, identity = results["baseline"], results["identity (= baseline)"]
    assert identity["base_loss"] == pytest.approx(base["base_loss"], rel=1e-4, abs=1e-5)
    assert identity["accuracy"] == pytest.approx(base["accuracy"], abs=1e-6)
    assert "reproduces the baseline: True" in capsys.readouterr().out


def test_ranking(tmp_path):
    results = _load("ranking").main(["--quick", "--out", str(tmp_path)])
    for r in results.values():
        assert 0 <= r["exact_match"] <= r["elementwise_accuracy"] <= 1
    model = keras.saving.load_model(str(tmp_path / "ranker.keras"))
    assert model.loss.get_config()["curvature"] == "hessian"
    sets = np.random.default_rng(0).uniform(0, 255, (3,) + tuple(model.input_shape[1:]))
    report, scores = load_in_fresh_process(str(tmp_path / "ranker.keras"),
                                           tmp_path / "fresh", sets.astype("float32"))
    assert report["loss"]["config"]["curvature"] == "hessian"
    np.testing.assert_allclose(scores, model.predict(sets.astype("float32"), verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_shortest_paths(tmp_path):
    results = _load("shortest_paths").main(["--quick", "--out", str(tmp_path)])
    assert set(results) == {"baseline", "newton (hessian)"}
    for r in results.values():
        assert 0 <= r["perfect_match"] <= r["optimal_cost"] <= 100
        assert r["cost_ratio"] >= 1 - 1e-6


def test_tuning(tmp_path):
    pytest.importorskip("keras_tuner")
    tuner = _load("tuning").main(["--quick", "--out", str(tmp_path)])
    best_trial = tuner.oracle.get_best_trials(1)[0]
    model = keras.saving.load_model(str(tmp_path / "best_model.keras"))
    from keras_newton.datasets import load_mnist

    (x, y), _ = load_mnist("bundled", verbose=False)
    val = model.evaluate(x[400:600], y[400:600], verbose=0, return_dict=True)
    assert val["accuracy"] == pytest.approx(best_trial.score, abs=1e-6)
    _, logits = load_in_fresh_process(str(tmp_path / "best_model.keras"), tmp_path / "fresh",
                                      x[400:600])
    assert np.mean(np.argmax(logits, -1) == y[400:600]) == pytest.approx(best_trial.score,
                                                                        abs=1e-6)


def test_serving(tmp_path):
    import tensorflow as tf

    result = _load("serving").main(["--quick", "--out", str(tmp_path)])
    assert result["match"] is True
    assert result["path"] == os.path.join(str(tmp_path), "models", "ranker", "1")
    served = tf.saved_model.load(result["path"])
    images = np.zeros((2, 28, 112, 1), np.float32)
    assert served.signatures["serving_default"](images=images)["scores"].shape == (2,)

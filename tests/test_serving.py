"""TF-Serving export of a ranker: ``keras-newton export ranker`` / `export_ranker`.

Specification: the SavedModel's ``serving_default`` maps ``images`` ``(B, 28, 112, 1)`` to
``scores`` ``(B,)`` and ``rank_sets`` maps ``sets`` ``(B, n, 28, 112)`` to ``scores`` and
``order = argsort(scores)`` (ascending); loaded with `tf.saved_model.load` and run through
``saved_model_cli run``, both reproduce the Keras model's own predictions on the same sets
(float32, tolerance 1e-5), ``rank_sets`` also for a set size other than the trained one
(checked against a model of that size with the same weights).
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_newton.app import cli
from keras_newton.models import multi_digit_cnn
from keras_newton.serving import export_ranker, find_scorer

N = 3


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    keras.utils.set_random_seed(0)
    model = multi_digit_cnn(N)
    path = str(root / "ranker.keras")
    model.save(path)
    out = str(root / "models" / "ranker" / "1")
    assert cli.main(["export", "ranker", "--model", path, "--out", out]) == 0
    return model, out


def _sets(batch, n, seed=0):
    return np.random.default_rng(seed).uniform(size=(batch, n, 28, 112)).astype("float32")


def test_signatures_reproduce_the_keras_model(exported):
    model, out = exported
    served = tf.saved_model.load(out)
    assert set(served.signatures) == {"serving_default", "rank_sets"}
    default = served.signatures["serving_default"]
    assert list(default.structured_input_signature[1]) == ["images"]
    assert default.structured_input_signature[1]["images"].shape.as_list() == [
        None, 28, 112, 1]
    sets = _sets(4, N)
    reference = model.predict(sets, verbose=0)  # (4, N), the trained model's own path
    scores = default(images=tf.constant(sets.reshape(-1, 28, 112, 1)))["scores"].numpy()
    np.testing.assert_allclose(scores, reference.reshape(-1), rtol=1e-5, atol=1e-5)
    ranked = served.signatures["rank_sets"](sets=tf.constant(sets))
    np.testing.assert_allclose(ranked["scores"].numpy(), reference, rtol=1e-5, atol=1e-5)
    assert ranked["order"].dtype == tf.int32
    np.testing.assert_array_equal(ranked["order"].numpy(),
                                  np.argsort(reference, axis=-1, kind="stable"))


def test_rank_sets_takes_any_set_size(exported):
    model, out = exported
    bigger = multi_digit_cnn(5)
    bigger.set_weights(model.get_weights())  # the same item scorer
    sets = _sets(2, 5, seed=1)
    reference = bigger.predict(sets, verbose=0)
    ranked = tf.saved_model.load(out).signatures["rank_sets"](sets=tf.constant(sets))
    np.testing.assert_allclose(ranked["scores"].numpy(), reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ranked["order"].numpy(), np.argsort(reference, axis=-1))


def test_saved_model_cli_run(exported, tmp_path):
    # One subprocess (it imports TensorFlow): the set signature, both of its outputs.
    model, out = exported
    sets = _sets(2, N, seed=2)
    np.save(tmp_path / "sets.npy", sets)
    cli_path = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli_path):
        pytest.skip("saved_model_cli (ships with tensorflow) is not installed")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result_dir = tmp_path / "outputs"
    subprocess.run([cli_path, "run", "--dir", out, "--tag_set", "serve",
                    "--signature_def", "rank_sets", "--inputs", f"sets={tmp_path / 'sets.npy'}",
                    "--outdir", str(result_dir)],
                   check=True, env=env, capture_output=True, timeout=300)
    reference = model.predict(sets, verbose=0)
    np.testing.assert_allclose(np.load(result_dir / "scores.npy"), reference, rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_array_equal(np.load(result_dir / "order.npy"),
                                  np.argsort(reference, axis=-1))


def test_bad_exports(exported, tmp_path, capsys):
    model, out = exported
    with pytest.raises(ValueError, match="version"):
        export_ranker(model, str(tmp_path / "ranker"))
    with pytest.raises(ValueError, match="not empty"):
        export_ranker(model, out)
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="TimeDistributed"):
        find_scorer(dense)
    with pytest.raises(TypeError, match="keras.Model"):
        find_scorer("ranker.keras")
    # A missing model file is a user error: one line on stderr, exit status 2.
    code = cli.main(["export", "ranker", "--model", str(tmp_path / "missing.keras"),
                     "--out", str(tmp_path / "m" / "1")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("keras-newton: error: ") and "does not exist" in err[0]
    scorer, shape = find_scorer(model)
    assert shape == (28, 112) and scorer.output_shape == (None, 1)

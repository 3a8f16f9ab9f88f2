"""KerasTuner hypermodels and ``keras-newton tune`` (skipped without keras_tuner).

Specification:
- a hypermodel compiles exactly the loss, relaxation and optimizer its hyperparameters name
  (checked on the built objects, for fixed hyperparameter values);
- ``tikhonov`` is only active for Newton curvatures;
- a 2-trial search runs end to end offline; its summary ranks the trials by score; the
  saved best model loads from ``best_model.keras``, reproduces the best trial's validation
  score when evaluated again on the same validation sets, and the test metrics of the
  summary; its compiled loss carries the best trial's hyperparameters;
- the shortest-path validation callback logs exactly `path_metrics` of the final model.
"""

import json
import os

import numpy as np
import pytest

kt = pytest.importorskip("keras_tuner")
pytest.importorskip("tensorboard")

import keras  # noqa: E402

from keras_newton import NewtonLoss  # noqa: E402
from keras_newton import models  # noqa: E402
from keras_newton.app import cli, tune  # noqa: E402
from keras_newton.losses import RankingLoss  # noqa: E402
from keras_newton.tikhonov import to_per_sample  # noqa: E402


def _hp(**values):
    hp = kt.HyperParameters()
    for name, value in values.items():
        hp.values[name] = value
    return hp


def test_classification_hypermodel_builds_what_the_hyperparameters_say():
    hm = models.ClassificationHyperModel("m1", optimizer="adam")
    model = hm.build(_hp(curvature="fisher", tikhonov=3.5, learning_rate=2e-3))
    assert model.name == "M1"
    assert isinstance(model.loss, NewtonLoss)
    config = model.loss.get_config()
    assert config["curvature"] == "fisher" and config["tikhonov"] == pytest.approx(3.5)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(2e-3)
    sgd = models.ClassificationHyperModel("M5", optimizer="sgd")
    base = sgd.build(_hp(curvature="baseline", learning_rate=0.05))
    assert isinstance(base.loss, keras.losses.SparseCategoricalCrossentropy)
    assert isinstance(base.optimizer, keras.optimizers.SGD) and base.name == "M5"
    assert float(base.optimizer.learning_rate) == pytest.approx(0.05)
    assert hm.objective.name == "val_accuracy" and hm.objective.direction == "max"


@pytest.mark.parametrize("curvature, power", [("hessian", 1), ("fisher", 2)])
def test_batch_mean_convention_scales_the_searched_tikhonov(curvature, power):
    """A batch-mean lambda t over B samples is B t (Hessian) or B^2 t (Fisher) in ours."""
    hm = models.ClassificationHyperModel("m1", optimizer="adam", tikhonov_convention="batch_mean",
                                         batch_size=50)
    model = hm.build(_hp(curvature=curvature, tikhonov=0.02, learning_rate=1e-3))
    assert model.loss.get_config()["tikhonov"] == pytest.approx(0.02 * 50**power)
    assert hm.get_config()["tikhonov_convention"] == "batch_mean"
    with pytest.raises(ValueError, match="batch_size"):
        models.ClassificationHyperModel("m1", tikhonov_convention="batch_mean")
    with pytest.raises(ValueError, match="tikhonov_convention"):
        models.ClassificationHyperModel("m1", tikhonov_convention="sum")


def test_tikhonov_is_conditional_on_a_newton_curvature():
    hm = models.ClassificationHyperModel("M1", curvatures=["baseline", "hessian"])
    hp = kt.HyperParameters()
    hm.build(hp)  # registers the search space with default values
    space = {p.name: p for p in hp.space}
    assert set(space) == {"curvature", "tikhonov", "learning_rate"}
    assert space["tikhonov"].min_value == 1e-3 and space["tikhonov"].max_value == 1e3
    assert space["tikhonov"].sampling == "log"
    for curvature, active in (("baseline", False), ("hessian", True)):
        hp.values["curvature"] = curvature
        assert hp.is_active(space["tikhonov"]) is active


def test_ranking_hypermodel_uses_the_bench_loss():
    hm = models.RankingHyperModel(n=4, relaxation="diffsort", curvatures=["hessian"],
                                  tikhonov=0.25, learning_rate=(1e-4, 1e-2))
    model = hm.build(_hp(curvature="hessian", tikhonov=0.25, steepness=7.0,
                         learning_rate=1e-3))
    assert model.output_shape == (None, 4)
    assert isinstance(model.loss, NewtonLoss)
    assert model.loss.get_config()["tikhonov"] == pytest.approx(0.25)
    relaxation = model.loss.base_loss.relaxation
    assert type(relaxation).__name__ == "DiffSort" and relaxation.steepness == 7.0
    softsort = models.RankingHyperModel(n=3, relaxation="softsort").build(
        _hp(curvature="baseline", tau=0.5, learning_rate=1e-3))
    assert isinstance(softsort.loss, RankingLoss) and softsort.loss.relaxation.tau == 0.5


def test_shortest_path_hypermodel_variants_and_beta():
    hm = models.ShortestPathHyperModel("bf_for_l1", grid=6, input_shape=(24, 24, 3))
    assert hm.curvatures == ["baseline", "fisher", "hessian"]
    model = hm.build(_hp(curvature="fisher", tikhonov=0.01, beta=5.0, learning_rate=1e-3))
    assert model.output_shape == (None, 6, 6)
    assert model.loss.base_loss.relaxation.beta == 5.0
    with pytest.raises(ValueError, match="curvatures"):
        models.ShortestPathHyperModel("smooth_algorithm", curvatures=["hessian"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(tikhonov=0.0), "tikhonov"),
    (dict(tikhonov=(10.0, 1.0)), "tikhonov"),
    (dict(learning_rate=(1e-3, float("inf"))), "learning_rate"),
    (dict(curvatures=["newton"]), "curvatures"),
    (dict(relaxation="bubble"), "relaxation"),
    (dict(n=1), "n"),
])
def test_bad_hypermodel_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.RankingHyperModel(**kwargs)


def test_tuner_kinds(tmp_path):
    hm = models.ClassificationHyperModel("M1")
    for kind, oracle in (("random", "RandomSearchOracle"),
                         ("bayesian", "BayesianOptimizationOracle"),
                         ("hyperband", "HyperbandOracle")):
        config = tune.make_config("classification", tuner=kind, max_trials=4, epochs=3)
        tuner = tune.make_tuner(config, hm, str(tmp_path), project_name=kind)
        assert type(tuner.oracle).__name__ == oracle
        assert tuner.oracle.objective.name == "val_accuracy"
        if kind != "hyperband":
            assert tuner.oracle.max_trials == 4
        else:
            assert tuner.oracle.max_epochs == 3
    with pytest.raises(ValueError, match="tuner"):
        tune.make_config("ranking", tuner="grid")
    assert tune.parse_range("1e-2,1e2") == (0.01, 100.0) and tune.parse_range("3") == 3.0


def test_tune_ranking_two_trials_end_to_end(tmp_path, capsys):
    out = str(tmp_path / "tune")
    code = cli.main(["tune", "ranking", "--quick", "--max-trials", "2", "--epochs", "1",
                     "--curvatures", "baseline,fisher", "--out", out])
    assert code == 0
    printed = capsys.readouterr().out
    assert "val_exact_match" in printed and "best model" in printed
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    trials = summary["trials"]
    assert len(trials) == 2 and all(t["status"] == "COMPLETED" for t in trials)
    scores = [t["score"] for t in trials]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    best = summary["best"]
    assert best["trial_id"] == trials[0]["trial_id"] and best["score"] == scores[0]
    hp = best["hyperparameters"]
    assert ("tikhonov" in hp) == (hp["curvature"] != "baseline")
    assert 0.1 <= hp["tau"] <= 10.0 and 1e-4 <= hp["learning_rate"] <= 1e-2

    # The best model loads from its file and is the best trial's model.
    model = keras.saving.load_model(best["model_path"])
    if hp["curvature"] == "baseline":
        assert isinstance(model.loss, RankingLoss)
        relaxation = model.loss.relaxation
    else:
        assert isinstance(model.loss, NewtonLoss)
        assert model.loss.get_config()["curvature"] == hp["curvature"]
        # tune searches lambda in the batch-mean convention; the loss holds ours.
        expected = to_per_sample(hp["tikhonov"], hp["curvature"],
                                 summary["config"]["batch_size"], "batch_mean")
        assert summary["config"]["tikhonov_convention"] == "batch_mean"
        assert model.loss.get_config()["tikhonov"] == pytest.approx(expected)
        relaxation = model.loss.base_loss.relaxation
    assert relaxation.tau == pytest.approx(hp["tau"])
    assert float(model.optimizer.learning_rate) == pytest.approx(hp["learning_rate"])
    # Evaluated again on the same validation and test sets, it reproduces the scores.
    config = summary["config"]
    fit_args, fit_kwargs, evaluate, _ = tune.DATA["ranking"](config, verbose=False)
    val = model.evaluate(fit_kwargs["validation_data"], verbose=0, return_dict=True)
    assert val["exact_match"] == pytest.approx(best["score"], abs=1e-6)
    for key, value in evaluate(model).items():
        assert value == pytest.approx(best["test"][key], abs=1e-6)


def test_path_validation_logs_path_metrics():
    from keras_newton.metrics.paths import path_metrics
    from keras_newton.models.hypermodels import PathValidation
    from keras_newton.paths import pack_path_targets, solve_shortest_paths

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 12, 12, 3)).astype("float32")
    costs = rng.uniform(0.1, 2.0, size=(6, 3, 3)).astype("float32")
    paths = solve_shortest_paths(costs).astype("float32")
    hm = models.ShortestPathHyperModel("bf_for_l1", grid=3, input_shape=(12, 12, 3),
                                       curvatures=["baseline"])
    hp = kt.HyperParameters()
    model = hm.build(hp)
    history = hm.fit(hp, model, x[:4], paths[:4], batch_size=4, epochs=1, verbose=0,
                     validation_data=(x[4:], pack_path_targets(paths[4:], costs[4:])))
    expected = path_metrics(model.predict(x[4:], verbose=0), costs[4:], paths[4:])
    for key, value in expected.items():
        assert history.history[f"val_{key}"][-1] == pytest.approx(value)
    with pytest.raises(ValueError, match="costs"):
        PathValidation(x[4:], paths[4:])

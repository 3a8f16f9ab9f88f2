"""Every model a ``keras-newton`` command saves loads after a plain ``import keras_newton``.

Specification:
- every object of the package source decorated with
  ``keras.saving.register_keras_serializable`` (found by reading the source, not by
  importing it) is in Keras' registry, under ``package>name``, in a fresh process that
  ran only ``import keras_newton``; among them the three that used to be registered only
  by importing a benchmark module (``ChannelMean``, ``nonnegative_shortest_path``,
  ``hamming_path_loss``);
- ``keras-newton tune {ranking,classification,shortest-path} --quick`` writes
  ``best_model.keras``; a fresh process doing only ``import keras_newton`` and
  ``keras.saving.load_model`` loads it with its compiled loss (the best trial's curvature
  and, for shortest paths, the registered solver), and its predictions give the test
  metrics that the search reported for its best model (computed here with NumPy and the
  library's metric functions from those predictions).
The models that the examples save are loaded the same way in tests/test_examples.py. The
other commands save no ``.keras`` file (``export`` writes a SavedModel, checked in
tests/test_serving.py; ``bench`` and ``data`` write results and arrays).
"""

import ast
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fresh_process import load_in_fresh_process, registered_names

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "keras_newton")


def _is_register_call(decorator):
    """``register_keras_serializable(...)`` however it is reached (keras.saving.X, X)."""
    if not isinstance(decorator, ast.Call):
        return False
    func = decorator.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name == "register_keras_serializable"


def serializable_objects(package_dir=PACKAGE):
    """``{registered name: "module:qualname"}`` of every decorated class or function."""
    found = {}
    for folder, _, files in os.walk(package_dir):
        for file in sorted(files):
            if not file.endswith(".py"):
                continue
            path = os.path.join(folder, file)
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                    continue
                for decorator in node.decorator_list:
                    if not _is_register_call(decorator):
                        continue
                    kwargs = {k.arg: k.value.value for k in decorator.keywords
                              if isinstance(k.value, ast.Constant)}
                    args = [a.value for a in decorator.args if isinstance(a, ast.Constant)]
                    package = kwargs.get("package", args[0] if args else "Custom")
                    name = kwargs.get("name", args[1] if len(args) > 1 else node.name)
                    found[f"{package}>{name}"] = f"{os.path.relpath(path, REPO)}:{node.name}"
    return found


def test_the_source_scanner_finds_the_registrations():
    found = serializable_objects()
    for name in ("keras_newton>NewtonLoss", "keras_newton>ChannelMean",
                 "keras_newton>nonnegative_shortest_path", "keras_newton>hamming_path_loss",
                 "keras_newton>FenchelYoungLoss", "keras_newton>PerfectMatch"):
        assert name in found, name
    assert all(name.startswith("keras_newton>") for name in found), found
    # The application defines no serializable object: the library holds them all.
    assert not [where for where in found.values() if where.startswith("keras_newton/app/")]


def test_import_keras_newton_registers_every_serializable_object(tmp_path):
    names = sorted(serializable_objects())
    code = ("import json, sys\nimport keras\nimport keras_newton\n"
            "names = json.loads(sys.argv[1])\n"
            "print(json.dumps([n for n in names "
            "if keras.saving.get_registered_object(n) is None]))\n")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(names)],
                          capture_output=True, text=True, cwd=str(tmp_path),
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    missing = json.loads(proc.stdout.strip().splitlines()[-1])
    assert missing == [], {n: serializable_objects()[n] for n in missing}


# -- the tune commands ----------------------------------------------------------------


def _exact_match_and_elementwise(pred, truth):
    """Ranking accuracies with NumPy: stable argsorts compared per set and per position."""
    same = np.argsort(pred, axis=-1, kind="stable") == np.argsort(truth, axis=-1,
                                                                  kind="stable")
    return {"exact_match": float(np.mean(same.all(axis=-1))),
            "elementwise_accuracy": float(np.mean(same))}


def _test_split(benchmark, config):
    """``(inputs, metrics_of(predictions))`` of the search's test split."""
    if benchmark == "ranking":
        from keras_newton.app import ranking
        from keras_newton.datasets import four_digit_datasets

        mnist, _ = ranking.load_data(dict(data=config["data"], require_full_mnist=False),
                                     verbose=False)
        _, _, test = four_digit_datasets(
            mnist, config["n"], batch_size=config["batch_size"],
            num_validation_sets=config["validation_sets"],
            num_test_sets=config["test_sets"], seed=config["seed"])
        xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in test])
        truth = np.concatenate(ys)
        return np.concatenate(xs), lambda pred: _exact_match_and_elementwise(pred, truth)
    if benchmark == "classification":
        from keras_newton.app import classification

        bench = classification.make_config("cpu", data=config["data"],
                                           max_train=config["max_train"],
                                           max_test=config["max_test"])
        (_, (xt, yt)), _ = classification.load_data(bench, verbose=False)
        return xt, lambda pred: {"accuracy": float(np.mean(np.argmax(pred, -1) == yt))}
    from keras_newton.app import shortest_path
    from keras_newton.datasets.warcraft import normalise_warcraft
    from keras_newton.metrics import path_metrics

    bench = shortest_path.make_config(
        "cpu", method=config["method"], data=config["data"],
        data_cache=config["data_cache"], n_train=config["n_train"], n_val=config["n_val"],
        n_test=config["n_test"])
    arrays, _ = shortest_path.load_data(bench, verbose=False)
    x_test, costs, paths = normalise_warcraft(arrays)["test"]
    return x_test, lambda pred: path_metrics(pred, costs, paths)


@pytest.mark.parametrize("benchmark, base_class, solver", [
    ("ranking", "keras_newton>RankingLoss", None),
    ("classification", "SparseCategoricalCrossentropy", None),
    ("shortest-path", "keras_newton>FenchelYoungLoss",
     "keras_newton>nonnegative_shortest_path"),
])
def test_tune_best_model_loads_in_a_fresh_process(benchmark, base_class, solver, tmp_path,
                                                  capsys):
    pytest.importorskip("keras_tuner")
    pytest.importorskip("tensorboard")
    from keras_newton.app import cli

    out = str(tmp_path / "tune")
    argv = ["tune", benchmark, "--quick", "--curvatures", "baseline,fisher", "--out", out]
    if benchmark == "shortest-path":
        argv += ["--data-cache", str(tmp_path / "warcraft")]
    assert cli.main(argv) == 0
    capsys.readouterr()
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    best = summary["best"]
    assert best["model_path"] == os.path.join(out, "best_model.keras")

    inputs, metrics_of = _test_split(benchmark, summary["config"])
    report, pred = load_in_fresh_process(best["model_path"], tmp_path / "fresh", inputs)
    assert report["app_modules"] == []
    loss = report["loss"]
    names = registered_names(loss)
    if best["hyperparameters"]["curvature"] == "baseline":
        base = loss
    else:
        assert loss["registered_name"] == "keras_newton>NewtonLoss"
        assert loss["config"]["curvature"] == best["hyperparameters"]["curvature"]
        base = loss["config"]["base_loss"]
    assert base_class in (base.get("registered_name"), base.get("class_name"))
    if solver:
        assert solver in names
    for key, value in metrics_of(pred).items():
        assert value == pytest.approx(best["test"][key], abs=1e-6), key

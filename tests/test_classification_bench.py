"""`keras-newton bench classification` (paper Table 4): the quick path end to end, the
statistics against scipy/numpy computed separately, and configuration errors."""

import json
import math
import os

import numpy as np
import pytest
from scipy import stats

from keras_newton.bench import classification as bench
from keras_newton.bench.cli import main


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "classification"
    # --quick: M1, SGD, 2 seeds, 1000 train / 500 test bundled digits, 1 epoch;
    # two variants keep it short, --epochs 2 exercises the epoch-1 / final split.
    rc = main(["bench", "classification", "--quick", "--data", "bundled",
               "--variants", "baseline,fisher", "--variants", "hessian",
               "--epochs", "2", "--max-train", "600", "--out", str(out)])
    assert rc == 0
    with open(out / "results.json") as f:
        results = json.load(f)
    with open(out / "table.txt") as f:
        table = f.read()
    return results, table


def test_quick_json_holds_config_data_and_every_run(quick_results):
    results, _ = quick_results
    config = results["config"]
    assert config["models"] == ["M1"] and config["optimizers"] == ["sgd"]
    assert config["variants"] == ["baseline", "fisher", "hessian"]
    assert config["seeds"] == [0, 1] and config["eval_epochs"] == [1, 2]
    assert results["data"]["kind"] == "bundled"
    assert results["data"]["n_train"] == 600 and results["data"]["n_test"] == 500
    runs = results["runs"]
    assert sorted((r["variant"], r["seed"]) for r in runs) == sorted(
        (v, s) for v in config["variants"] for s in config["seeds"])
    steps_per_epoch = math.ceil(600 / config["batch_size"])
    for r in runs:
        assert set(r["test_accuracy"]) == {"1", "2"}
        for acc in r["test_accuracy"].values():
            # An accuracy over 500 test digits is a multiple of 1/500.
            assert 0.0 <= acc <= 1.0 and abs(acc * 500 - round(acc * 500)) < 1e-9
        assert len(r["history"]["base_loss"]) == 2
        assert r["step_time"]["n_steps"] == 2 * steps_per_epoch
        assert r["num_params"] == 784 * 100 + 100 + 4 * (100 * 100 + 100) + 100 * 10 + 10
        assert r["tikhonov"] == (None if r["variant"] == "baseline" else config["tikhonov"])


def test_quick_training_learns(quick_results):
    """Two epochs of SGD lower the base loss for every run (tracked by BaseLoss)."""
    results, _ = quick_results
    for r in results["runs"]:
        losses = r["history"]["base_loss"]
        assert all(math.isfinite(v) for v in losses) and not r["diverged"]
        assert losses[1] < losses[0] < math.log(10) + 0.1


def test_summary_statistics_match_per_seed_numbers(quick_results):
    results, table = quick_results
    runs = {(r["variant"], r["seed"]): r for r in results["runs"]}
    seeds = results["config"]["seeds"]
    for row in results["summary"]:
        accs = [runs[(row["variant"], s)]["test_accuracy"][str(row["epoch"])] for s in seeds]
        assert row["accuracies"] == accs
        assert row["mean"] == pytest.approx(np.mean(accs), abs=1e-12)
        assert row["std"] == pytest.approx(np.std(accs, ddof=1), abs=1e-12)
        # The table prints exactly these means and stds, in percent.
        assert f"{100 * row['mean']:.2f} +- {100 * row['std']:.2f}" in table
        if row["variant"] == "baseline":
            assert row["p_value"] is None and row["step_time_ratio"] == pytest.approx(1.0)
            continue
        base = [runs[("baseline", s)]["test_accuracy"][str(row["epoch"])] for s in seeds]
        t, p = stats.ttest_ind(accs, base, equal_var=False)
        if np.isfinite(p):
            assert row["p_value"] == pytest.approx(p, rel=1e-9)
        else:
            assert row["p_value"] is None
        assert row["better_mean"] == bool(np.mean(accs) > np.mean(base))
        significant = row["p_value"] is not None and row["p_value"] < 0.05
        assert row["significantly_better"] == (significant and np.mean(accs) > np.mean(base))
        assert row["significantly_worse"] == (significant and np.mean(accs) < np.mean(base))
        # Step time: median over seeds of per-run medians, as a ratio to the baseline's.
        med = np.median([runs[(row["variant"], s)]["step_time"]["median_s"] for s in seeds])
        base_med = np.median([runs[("baseline", s)]["step_time"]["median_s"] for s in seeds])
        ratio = row["step_time_ratio"]
        assert math.isfinite(ratio) and ratio > 0
        assert ratio == pytest.approx(med / base_med, rel=1e-12)


def test_runs_are_reproducible_per_seed():
    """A seed fixes the initial weights and the data order: rerunning it gives the same
    accuracies and losses (the variants of one seed start from the same point)."""
    config = bench.make_config("quick", max_train=200, max_test=100, variants=["baseline"])
    data = bench.load_data(config, verbose=False)[0]
    a = bench.train_one(data, "M1", "sgd", "baseline", 3, config, progress=False)
    b = bench.train_one(data, "M1", "sgd", "baseline", 3, config, progress=False)
    assert a["test_accuracy"] == b["test_accuracy"]
    assert a["history"]["base_loss"] == pytest.approx(b["history"]["base_loss"], rel=1e-6)


def test_welch_test_edge_cases():
    t, p = bench.welch_test([0.5, 0.5], [0.5, 0.5])
    assert math.isnan(t) and math.isnan(p)
    assert math.isnan(bench.welch_test([0.5], [0.4, 0.6])[1])
    x, y = [0.91, 0.93, 0.92], [0.88, 0.87, 0.89]
    # Welch's t from its definition, numpy float64.
    vx, vy = np.var(x, ddof=1) / 3, np.var(y, ddof=1) / 3
    t_ref = (np.mean(x) - np.mean(y)) / np.sqrt(vx + vy)
    assert bench.welch_test(x, y)[0] == pytest.approx(t_ref, rel=1e-12)


def test_format_table_marks():
    config = bench.make_config("quick", variants=["baseline", "fisher", "hessian"],
                               seeds=[0, 1, 2])

    def run(variant, seed, acc):
        return {"model": "M1", "optimizer": "sgd", "variant": variant, "seed": seed,
                "test_accuracy": {"1": acc},
                "step_time": {"median_s": {"baseline": 0.01, "fisher": 0.02,
                                           "hessian": 0.015}[variant]}}

    accs = {"baseline": [0.90, 0.91, 0.92], "fisher": [0.96, 0.97, 0.98],
            "hessian": [0.80, 0.81, 0.82]}
    runs = [run(v, s, accs[v][s]) for v in accs for s in range(3)]
    results = {"config": config, "summary": bench.summarize(runs, config), "runs": runs}
    table = bench.format_table(results)
    assert "97.00 +- 1.00 ++" in table      # significantly better
    assert "81.00 +- 1.00 --" in table      # significantly worse
    assert "2.00x" in table and "1.50x" in table and "10.00 ms" in table


@pytest.mark.parametrize("argv, match", [
    (["--models", "M9"], "models must be"),
    (["--optimizers", "rmsprop"], "optimizers must be"),
    (["--variants", "newton"], "variants must be"),
    (["--epochs", "0"], "epochs must be"),
    (["--tikhonov", "-1"], "tikhonov must be"),
    (["--seeds", "x"], "--seeds"),
    (["--data", "not_a_source"], "source must be"),
])
def test_bad_options_exit_with_a_clear_message(argv, match, capsys, tmp_path):
    rc = main(["bench", "classification", "--quick", "--out", str(tmp_path)] + argv)
    assert rc == 2
    assert match in capsys.readouterr().err


def test_paper_preset_config_and_full_mnist_requirement(monkeypatch, tmp_path, capsys):
    parser = __import__("keras_newton.bench.cli", fromlist=["build_parser"]).build_parser()
    config = bench.config_from_args(parser.parse_args(["bench", "classification", "--paper"]))
    assert config["models"] == ["M1", "M2", "M3", "M4", "M5"]
    assert config["seeds"] == list(range(20)) and config["eval_epochs"] == [1, 200]
    assert config["data"] == "auto" and config["require_full_mnist"]
    # Offline and without a cache, "auto" finds only the subset: the preset refuses.
    monkeypatch.delenv("KERAS_NEWTON_MNIST", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "none"))
    rc = main(["bench", "classification", "--paper", "--out", str(tmp_path)])
    assert rc == 2 and "needs full MNIST" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "results.json")

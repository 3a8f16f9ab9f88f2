"""`keras-newton bench classification` (paper Table 4): the quick path end to end, the
statistics against scipy/numpy computed separately, and configuration errors."""

import json
import math
import os
import re
import zlib

import numpy as np
import pytest
from scipy import stats

from keras_newton.app import classification as bench
from keras_newton.app.cli import main


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "classification"
    # --quick: M1, SGD, 2 seeds, bundled digits, 1 epoch; --epochs 2 exercises the
    # epoch-1 / final split. A 2-value sweep on seed 0, then seed 1 at the picks; the last
    # 100 of 600 training digits validate.
    rc = main(["bench", "classification", "--quick", "--data", "bundled",
               "--variants", "baseline,fisher", "--variants", "hessian",
               "--epochs", "2", "--max-train", "600", "--validation", "100",
               "--tikhonov", "0.1,10", "--sweep-seeds", "0", "--out", str(out)])
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
    assert config["tikhonov"] == [0.1, 10.0] and config["sweep_seeds"] == [0]
    assert results["data"]["kind"] == "bundled"
    assert results["data"]["n_train"] == 500 and results["data"]["n_validation"] == 100
    assert results["data"]["n_test"] == 500
    runs = results["runs"]
    # The picks from the seed-0 sweep records, on mean validation accuracy at epoch 2.
    picks = {}
    for v in ("fisher", "hessian"):
        val = {r["tikhonov"]: r["validation_accuracy"]["2"] for r in runs
               if r["variant"] == v and r["seed"] == 0}
        assert sorted(val) == [0.1, 10.0]
        picks[v] = 0.1 if val[0.1] >= val[10.0] else 10.0  # first on ties
    assert results["selected_tikhonov"] == {"M1": {"sgd": picks}}
    # Sweep: both lambdas on seed 0; then the baseline on both seeds and each variant at
    # its pick on seed 1 only (seed 0 at the pick is the sweep's run, reused).
    expected = ([("fisher", lam, 0) for lam in (0.1, 10.0)]
                + [("hessian", lam, 0) for lam in (0.1, 10.0)]
                + [("baseline", None, 0), ("baseline", None, 1),
                   ("fisher", picks["fisher"], 1), ("hessian", picks["hessian"], 1)])
    got = [(r["variant"], r["tikhonov"], r["seed"]) for r in runs]
    assert sorted(got, key=str) == sorted(expected, key=str)
    assert len(runs) == bench.count_runs(bench.validate_config(config))
    assert [r["stage"] for r in runs] == ["sweep"] * 4 + ["final"] * 4
    steps_per_epoch = math.ceil(500 / config["batch_size"])
    for r in runs:
        assert set(r["test_accuracy"]) == {"1", "2"} == set(r["validation_accuracy"])
        for acc in r["test_accuracy"].values():
            # An accuracy over 500 test digits is a multiple of 1/500.
            assert 0.0 <= acc <= 1.0 and abs(acc * 500 - round(acc * 500)) < 1e-9
        for acc in r["validation_accuracy"].values():
            assert 0.0 <= acc <= 1.0 and abs(acc * 100 - round(acc * 100)) < 1e-9
        assert len(r["history"]["base_loss"]) == 2
        assert r["step_time"]["n_steps"] == 2 * steps_per_epoch
        assert r["num_params"] == 784 * 100 + 100 + 4 * (100 * 100 + 100) + 100 * 10 + 10


def test_quick_training_learns(quick_results):
    """Two epochs of SGD lower the base loss for every run (tracked by BaseLoss)."""
    results, _ = quick_results
    for r in results["runs"]:
        losses = r["history"]["base_loss"]
        assert all(math.isfinite(v) for v in losses) and not r["diverged"]
        assert losses[1] < losses[0] < math.log(10) + 0.1


def test_summary_statistics_match_per_seed_numbers(quick_results):
    results, table = quick_results
    runs = {(r["variant"], r["tikhonov"], r["seed"]): r for r in results["runs"]}
    seeds = results["config"]["seeds"]
    picks = results["selected_tikhonov"]["M1"]["sgd"]
    for row in results["summary"]:
        lam = picks.get(row["variant"])
        assert row["tikhonov"] == lam
        group = [runs[(row["variant"], lam, s)] for s in seeds]
        accs = [r["test_accuracy"][str(row["epoch"])] for r in group]
        vals = [r["validation_accuracy"][str(row["epoch"])] for r in group]
        assert row["accuracies"] == accs and row["val_accuracies"] == vals
        assert row["val_mean"] == pytest.approx(np.mean(vals), abs=1e-12)
        assert row["val_std"] == pytest.approx(np.std(vals, ddof=1), abs=1e-12)
        assert row["mean"] == pytest.approx(np.mean(accs), abs=1e-12)
        assert row["std"] == pytest.approx(np.std(accs, ddof=1), abs=1e-12)
        # The table prints exactly these means and stds, in percent.
        assert f"{100 * row['mean']:.2f} +- {100 * row['std']:.2f}" in table
        if row["variant"] == "baseline":
            assert row["p_value"] is None and row["step_time_ratio"] == pytest.approx(1.0)
            continue
        base = [runs[("baseline", None, s)]["test_accuracy"][str(row["epoch"])]
                for s in seeds]
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
        med = np.median([r["step_time"]["median_s"] for r in group])
        base_med = np.median([runs[("baseline", None, s)]["step_time"]["median_s"]
                              for s in seeds])
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
                "tikhonov": None if variant == "baseline" else 1.0,
                "test_accuracy": {"1": acc}, "validation_accuracy": {"1": acc - 0.01},
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
    (["--tikhonov", ""], "--tikhonov has an empty value"),
    (["--tikhonov", "0.1,,1"], "--tikhonov has an empty value"),
    (["--tikhonov", "0.1,abc"], "--tikhonov takes numbers"),
    (["--tikhonov", "0.1,1,0.1"], "tikhonov sweep has repeated values"),
    (["--tikhonov", "0.1,-1"], "tikhonov values must be finite and >= 0"),
    (["--tikhonov", "nan,1"], "tikhonov values must be finite and >= 0"),
    (["--tikhonov", "1,inf"], "tikhonov values must be finite and >= 0"),
    (["--sweep-seeds", "0"], "sweep_seeds needs a tikhonov sweep"),
    (["--tikhonov", "0.1,1", "--sweep-seeds", "7"], "sweep_seeds must be"),
    (["--tikhonov", "0.1,1", "--validation", "0"], "validation must be > 0"),
    (["--validation", "-1"], "validation must be an integer"),
    (["--max-train", "50", "--validation", "50"], "validation must be smaller than the 50"),
    (["--seeds", "x"], "--seeds"),
    (["--data", "not_a_source"], "source must be"),
])
def test_bad_options_exit_with_a_clear_message(argv, match, capsys, tmp_path):
    rc = main(["bench", "classification", "--quick", "--out", str(tmp_path)] + argv)
    assert rc == 2
    assert match in capsys.readouterr().err


def test_paper_preset_config_and_full_mnist_requirement(monkeypatch, tmp_path, capsys):
    parser = __import__("keras_newton.app.cli", fromlist=["build_parser"]).build_parser()
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


# -- the sweep on synthetic records (no training) ------------------------------------------

GRID = [1e-3, 0.1, 10.0]


def _synthetic(model, opt, variant, lam, seed):
    """Deterministic accuracies for a run: validation peaks at a lambda that depends on
    the cell, test at a different one (so a pick on test would differ)."""
    rng = np.random.default_rng(zlib.crc32(repr((model, opt, variant, lam, seed)).encode()))
    if variant == "baseline":
        val, test = 0.90, 0.91
    else:
        best_val = {"M1": 0.1, "M5": 10.0}[model] if opt == "sgd" else 1e-3
        best_test = 1e-3 if best_val != 1e-3 else 10.0
        val = 0.93 - 0.02 * abs(math.log10(lam) - math.log10(best_val))
        test = 0.95 - 0.02 * abs(math.log10(lam) - math.log10(best_test))
    noise = rng.normal(0, 0.002, 4)
    return {"model": model, "optimizer": opt, "variant": variant, "seed": seed,
            "tikhonov": lam, "diverged": False,
            "test_accuracy": {"1": test + noise[0], "2": test + noise[1]},
            "validation_accuracy": {"1": val + noise[2], "2": val + noise[3]},
            "step_time": {"median_s": 0.01 * (1 + (variant != "baseline"))}}


@pytest.fixture()
def fake_training(monkeypatch):
    calls = []

    def fake_train_one(data, model, opt, variant, seed, config, progress=True, prefix="",
                       tikhonov=None):
        assert len(data) == 3 and len(data[1][0]) == config["validation"]
        calls.append((model, opt, variant, tikhonov, seed))
        return _synthetic(model, opt, variant, tikhonov, seed)

    monkeypatch.setattr(bench, "train_one", fake_train_one)
    x = np.zeros((120, 28, 28), "uint8")
    y = np.zeros(120, "int32")
    data = (((x, y), (x[:10], y[:10])), {"kind": "synthetic"})
    return calls, data


def _expected_picks(config, seeds):
    """numpy argmax over the grid of the mean validation accuracy at the last epoch."""
    out = {}
    for m in config["models"]:
        for o in config["optimizers"]:
            for v in config["variants"][1:]:
                means = [np.mean([_synthetic(m, o, v, lam, s)["validation_accuracy"]["2"]
                                  for s in seeds]) for lam in GRID]
                out.setdefault(m, {}).setdefault(o, {})[v] = GRID[int(np.argmax(means))]
    return out


@pytest.mark.parametrize("sweep_seeds", [None, [1]])
def test_sweep_picks_on_validation_and_tests_at_the_pick(fake_training, sweep_seeds):
    calls, data = fake_training
    config = bench.make_config("quick", models=["M1", "M5"], optimizers=["sgd", "adam"],
                               seeds=[0, 1, 2], epochs=2, tikhonov=GRID, validation=20,
                               sweep_seeds=sweep_seeds)
    results = bench.run_benchmark(config, progress=False, data=data)
    seeds = sweep_seeds or [0, 1, 2]
    # No run twice; as many as count_runs says; every record kept.
    assert len(calls) == len(set(calls)) == bench.count_runs(config) == len(results["runs"])
    picks = _expected_picks(config, seeds)
    assert results["selected_tikhonov"] == picks
    # Chosen on validation, never test: here test peaks at another lambda in every cell.
    for m in config["models"]:
        for o in config["optimizers"]:
            for v in config["variants"][1:]:
                test_means = [np.mean([_synthetic(m, o, v, lam, s)["test_accuracy"]["2"]
                                       for s in seeds]) for lam in GRID]
                assert picks[m][o][v] != GRID[int(np.argmax(test_means))]
    # Two-stage: every Newton variant at every lambda on the sweep seeds only, then the
    # baseline and the picks on all seeds; one-stage: everything on every seed.
    for m, o, v, lam, s in calls:
        if v != "baseline" and lam != picks[m][o][v]:
            assert s in seeds
    # The summary: each variant at its pick over all seeds, Welch against the baseline as
    # scipy computes it; the sweep rows: per lambda over the sweep seeds.
    for row in results["summary"]:
        m, o, v, e = row["model"], row["optimizer"], row["variant"], str(row["epoch"])
        lam = None if v == "baseline" else picks[m][o][v]
        assert row["tikhonov"] == lam
        accs = [_synthetic(m, o, v, lam, s)["test_accuracy"][e] for s in [0, 1, 2]]
        vals = [_synthetic(m, o, v, lam, s)["validation_accuracy"][e] for s in [0, 1, 2]]
        assert row["accuracies"] == pytest.approx(accs, abs=0)
        assert row["val_mean"] == pytest.approx(np.mean(vals), rel=1e-12)
        if v == "baseline":
            assert row["p_value"] is None
            continue
        base = [_synthetic(m, o, "baseline", None, s)["test_accuracy"][e] for s in [0, 1, 2]]
        t, p = stats.ttest_ind(accs, base, equal_var=False)
        assert row["t"] == pytest.approx(t, rel=1e-9)
        assert row["p_value"] == pytest.approx(p, rel=1e-9)
    sweep_rows = results["sweep"]
    assert len(sweep_rows) == 2 * 2 * (1 + 3 * len(GRID))
    for row in sweep_rows:
        m, o, v, lam = row["model"], row["optimizer"], row["variant"], row["tikhonov"]
        assert row["seeds"] == seeds
        vals = [_synthetic(m, o, v, lam, s)["validation_accuracy"]["2"] for s in seeds]
        assert row["val_mean"] == pytest.approx(np.mean(vals), rel=1e-12)
        assert row["selected"] == (v != "baseline" and picks[m][o][v] == lam)
    table = bench.format_table(results)
    for m in ("M1", "M5"):
        lam = re.escape(f"{picks[m]['sgd']['fisher']:g}")
        assert len(re.findall(rf"^{m}\s+SGD\s+NL \(F\)\s+{lam}\*", table, re.M)) == 1
        assert len(re.findall(rf"^{m}\s+SGD\s+NL \(F\)\s+\S+\*", table, re.M)) == 1


def test_pick_is_first_in_grid_order_on_ties_and_skips_nan():
    from keras_newton.app import common

    assert common.pick_best([(1e-3, 0.9), (0.1, 0.95), (10.0, 0.95)]) == 0.1
    assert common.pick_best([(1e-3, float("nan")), (0.1, 0.5)]) == 0.1
    assert common.pick_best([(1e-3, float("nan"))]) is None


@pytest.mark.parametrize("grid, match", [
    ([], "tikhonov sweep is empty"),
    ([0.1, 0.1], "tikhonov sweep has repeated values"),
    ([0.1, -1.0], "tikhonov values must be finite and >= 0"),
    ([float("nan"), 1.0], "tikhonov values must be finite and >= 0"),
    ([0.1, "x"], "tikhonov values must be numbers"),
])
def test_bad_tikhonov_lists_raise_naming_tikhonov(grid, match):
    with pytest.raises(ValueError, match=match):
        bench.make_config("quick", tikhonov=grid)


def test_validation_split_holds_out_the_last_training_digits():
    x = np.arange(60)[:, None]
    y = np.arange(60)
    xt = np.arange(100, 110)[:, None]
    data = ((x, y), (xt, np.arange(10)))
    (tx, ty), (vx, vy), (sx, sy) = bench.split_validation(
        data, bench.make_config("quick", validation=None))
    assert len(vx) == 60 // 12 and list(vy) == list(range(55, 60)) and list(ty) == list(
        range(55))
    assert sx is xt  # test untouched
    _, (vx, _), _ = bench.split_validation(data, bench.make_config("quick", validation=0))
    assert len(vx) == 0

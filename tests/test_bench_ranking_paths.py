"""The ranking and shortest-path benchmark commands, end to end in their quick modes.

The tables must be derived from the per-seed records they store: means and stds of the
per-seed test metrics, Welch p-values recomputed with SciPy, and step-time ratios equal to
the ratio of the median step times.
"""

import json
import os

import numpy as np
import pytest
from scipy import stats

from keras_newton.app import cli, ranking, shortest_path


def _check_summary(results, metric_keys, group_key=None):
    runs = results["runs"]
    for row in results["summary"]:
        rs = [r for r in runs if r["variant"] == row["variant"]
              and (group_key is None or r[group_key] == row[group_key])
              and (row["variant"] == "baseline" or r["tikhonov"] == row["tikhonov"])]
        base = [r for r in runs if r["variant"] == "baseline"
                and (group_key is None or r[group_key] == row[group_key])]
        for key, get in metric_keys.items():
            values = [get(r) for r in rs]
            np.testing.assert_allclose(row[key]["values"], values)
            np.testing.assert_allclose(row[key]["mean"], np.mean(values))
            std = np.std(values, ddof=1) if len(values) > 1 else 0.0
            np.testing.assert_allclose(row[key]["std"], std)
            if row["variant"] != "baseline" and row[key]["p_value"] is not None:
                p = stats.ttest_ind(values, [get(r) for r in base], equal_var=False).pvalue
                np.testing.assert_allclose(row[key]["p_value"], p)
        med = np.median([r["step_time"]["median_s"] for r in rs])
        base_med = np.median([r["step_time"]["median_s"] for r in base])
        np.testing.assert_allclose(row["step_time_ratio"], med / base_med)
        assert all(0 < r["step_time"]["median_s"] < 60 for r in rs)


def _fake_run(variant, seed, rng, **extra):
    return dict(variant=variant, seed=seed, tikhonov=None if variant == "baseline" else 0.1,
                step_time={"median_s": float(rng.uniform(0.01, 0.02))}, **extra)


def test_summaries_are_derived_from_the_per_seed_records(rng):
    """Synthetic records, so that means, stds, Welch p-values and ratios are checked."""
    seeds = [0, 1, 2]
    runs = [_fake_run(v, s, rng, test_exact_match=float(rng.uniform()),
                      test_elementwise=float(rng.uniform()),
                      best_val_exact_match=float(rng.uniform()))
            for s in seeds for v in ("baseline", "hessian", "fisher")]
    config = {"variants": ["baseline", "hessian", "fisher"]}
    results = {"runs": runs, "summary": ranking.summarize(runs, config)}
    _check_summary(results, {"test_exact_match": lambda r: 100 * r["test_exact_match"],
                             "test_elementwise": lambda r: 100 * r["test_elementwise"]})
    assert all(row["test_exact_match"]["p_value"] is not None
               for row in results["summary"][1:])
    runs = [_fake_run(v, s, rng, samples=k, test={m: float(rng.uniform(1, 2)) for m in
                                                 ("perfect_match", "optimal_cost", "cost_ratio")})
            for k in (3, 10) for s in seeds for v in ("baseline", "fisher")]
    config = {"variants": ["baseline", "fisher"], "samples": [3, 10]}
    results = {"runs": runs, "summary": shortest_path.summarize(runs, config)}
    assert len(results["summary"]) == 4
    _check_summary(results, {k: (lambda r, k=k: r["test"][k])
                             for k in ("perfect_match", "optimal_cost", "cost_ratio")},
                   group_key="samples")


def test_tikhonov_sweep_groups_runs_and_selects_on_validation(rng):
    """A sweep has one row per (variant, lambda); the selected lambda is the one with the
    best mean validation exact match, whatever the test accuracy says."""
    grid = [1e-3, 0.1, 10.0]
    config = ranking.validate_config(dict(ranking.CPU_DEFAULTS, tikhonov=grid,
                                          variants=["baseline", "hessian", "fisher"]))
    assert config["tikhonov_grid"] == grid
    runs = []
    for s in (0, 1, 2):
        runs.append(_fake_run("baseline", s, rng, best_val_exact_match=0.3,
                              test_exact_match=0.3, test_elementwise=0.5))
        for v in ("hessian", "fisher"):
            for lam in grid:
                val = float(rng.uniform(0.2, 0.4))
                run = _fake_run(v, s, rng, best_val_exact_match=val,
                                test_exact_match=1 - val, test_elementwise=0.5)
                runs.append(dict(run, tikhonov=lam))
    summary = ranking.summarize(runs, config)
    assert [(r["variant"], r["tikhonov"]) for r in summary] == (
        [("baseline", None)] + [(v, lam) for v in ("hessian", "fisher") for lam in grid])
    results = {"runs": runs, "summary": summary}
    _check_summary(results, {"val_exact_match": lambda r: 100 * r["best_val_exact_match"],
                             "test_exact_match": lambda r: 100 * r["test_exact_match"]})
    selected = ranking.select_tikhonov(summary)
    for v in ("hessian", "fisher"):
        means = [np.mean([r["best_val_exact_match"] for r in runs
                          if r["variant"] == v and r["tikhonov"] == lam]) for lam in grid]
        assert selected[v] == grid[int(np.argmax(means))]
    # A single value is a plain setting, not a sweep; bad values name the argument.
    config = ranking.validate_config(dict(ranking.CPU_DEFAULTS, tikhonov=[0.5]))
    assert config["tikhonov_grid"] is None and set(config["tikhonov"].values()) == {0.5}
    for bad in ([0.1, -1.0], [0.1, 0.1], [], [float("nan"), 1.0]):
        with pytest.raises(ValueError, match="tikhonov"):
            ranking.validate_config(dict(ranking.CPU_DEFAULTS, tikhonov=bad))


def test_paper_preset_settings_and_tikhonov_grid():
    """--paper: the paper's lr 1e-3 and batch 100, diffsort's 5000/10000 evaluation sets and
    EM5 selection; the grid 1e-3..1e3 read in the batch-mean convention, i.e. B * t for the
    Hessian and B^2 * t for the Fisher in our per-sample scale."""
    config = ranking.make_config("paper")
    assert config["learning_rate"] == 1e-3 and config["batch_size"] == 100
    assert (config["validation_sets"], config["test_sets"]) == (5000, 10000)
    assert config["select_on"] == "em5" and config["tikhonov_convention"] == "batch_mean"
    grid = [10.0**k for k in range(-3, 4)]
    groups = ranking._groups(config)
    for variant, power in (("hessian", 1), ("fisher", 2)):
        lams = [lam for _, v, lam in groups if v == variant]
        np.testing.assert_allclose(lams, [t * 100**power for t in grid], rtol=1e-12)
    # A single batch-mean value is converted the same way.
    # A single batch-mean value is converted the same way where the loss is built, and
    # validating the validated config again (as run_benchmark does) changes nothing.
    config = ranking.make_config("paper", tikhonov=[0.5])
    for _ in range(2):
        assert ranking.make_loss(config, "hessian")[0].tikhonov == pytest.approx(50.0)
        assert ranking.make_loss(config, "fisher")[0].tikhonov == pytest.approx(5000.0)
        config = ranking.validate_config(config)
    # Without a value the documented per-sample defaults are used as they are.
    config = ranking.validate_config(ranking.make_config("paper"))
    for variant, lam in ranking.DEFAULT_TIKHONOV["neuralsort"].items():
        assert ranking.make_loss(config, variant)[0].tikhonov == pytest.approx(lam)
    with pytest.raises(ValueError, match="select_on"):
        ranking.make_config("cpu", select_on="loss")


def test_exact_match_of_the_first_items(rng):
    """ExactMatchAccuracy(first=k): exact match of the order of the first k items only."""
    from keras_newton.metrics import ExactMatchAccuracy

    y_true = rng.permutation(np.arange(40, dtype=np.float32).reshape(4, 10).ravel()).reshape(4, 10)
    y_pred = y_true + rng.normal(scale=3.0, size=y_true.shape).astype(np.float32)
    want = np.mean([np.array_equal(np.argsort(t[:5], kind="stable"),
                                   np.argsort(p[:5], kind="stable"))
                    for t, p in zip(y_true, y_pred)])
    metric = ExactMatchAccuracy(first=5)
    metric.update_state(y_true, y_pred)
    assert float(metric.result()) == pytest.approx(want)
    assert ExactMatchAccuracy.from_config(metric.get_config()).first == 5
    with pytest.raises(ValueError, match="first"):
        ExactMatchAccuracy(first=1)


def test_bench_ranking_quick(tmp_path, capsys):
    """The quick run, as a two-value tikhonov sweep of the Fisher variant."""
    out = str(tmp_path / "ranking")
    code = cli.main(["bench", "ranking", "--quick", "--variants", "baseline,fisher",
                     "--seeds", "0", "--tikhonov", "0.01,1",
                     "--relaxation", "neuralsort", "--n", "3", "--out", out])
    assert code == 0
    printed = capsys.readouterr().out
    assert "fisher" in printed and "step ratio" in printed and "selected: fisher" in printed
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    assert results["data"]["kind"] == "bundled"
    assert len(results["runs"]) == 3
    assert sorted(r["tikhonov"] for r in results["runs"] if r["variant"] == "fisher") == [
        0.01, 1.0]
    assert results["selected_tikhonov"]["fisher"] in (0.01, 1.0)
    _check_summary(results, {"test_exact_match": lambda r: 100 * r["test_exact_match"],
                             "test_elementwise": lambda r: 100 * r["test_elementwise"],
                             "val_exact_match": lambda r: 100 * r["best_val_exact_match"]})
    for r in results["runs"]:
        assert r["best_step"] in r["curve"]["step"]
        # The reported best validation is the curve's maximum.
        assert r["best_val_exact_match"] == max(r["curve"]["val_exact_match"])
        assert 0 <= r["test_elementwise"] <= 1
    assert os.path.getsize(os.path.join(out, "convergence.png")) > 1000


def test_bench_shortest_path_quick(tmp_path, capsys):
    out = str(tmp_path / "sp")
    code = cli.main(["bench", "shortest-path", "--quick", "--method", "fenchel_young",
                     "--variants", "baseline,hessian", "--seeds", "0",
                     "--data-cache", str(tmp_path / "data"), "--out", out])
    assert code == 0
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    assert results["data"]["kind"] == "look_alike" and results["data"]["train"] == 24
    _check_summary(results, {k: (lambda r, k=k: r["test"][k])
                             for k in ("perfect_match", "optimal_cost", "cost_ratio")},
                   group_key="samples")
    for r in results["runs"]:
        assert r["test"]["cost_ratio"] >= 1 - 1e-6
        assert 0 <= r["test"]["perfect_match"] <= r["test"]["optimal_cost"] <= 100
    assert "fenchel_young" in capsys.readouterr().out


def test_shortest_path_config_errors():
    with pytest.raises(ValueError, match="method"):
        shortest_path.make_config(method="dijkstra")
    with pytest.raises(ValueError, match="variants"):
        shortest_path.make_config(method="smooth_algorithm", variants=["hessian"])
    with pytest.raises(ValueError, match="tikhonov"):
        shortest_path.make_config(tikhonov=-1.0)


def test_shortest_path_loss_options_reach_the_layers():
    """--absorbing-source and --hessian-baseline set the layer's and the loss's options;
    the defaults are AlgoVision's traceback and the unperturbed baseline."""
    config = shortest_path.make_config(method="bf_for_l1")
    loss = shortest_path.make_loss(config, "fisher", 3, 0)
    assert loss.base_loss.relaxation.absorbing_source is False
    config = shortest_path.make_config(method="bf_for_l1", absorbing_source=True)
    loss = shortest_path.make_loss(config, "fisher", 3, 0)
    assert loss.base_loss.relaxation.absorbing_source is True
    for option in ("unperturbed", "none"):
        config = shortest_path.make_config(method="fenchel_young", hessian_baseline=option)
        assert shortest_path.make_loss(config, "hessian", 3, 0).base_loss.hessian_baseline == (
            option)

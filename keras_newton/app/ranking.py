"""``keras-newton bench ranking``: four-digit MNIST ranking, paper Table 1.

Trains the ranking CNN (`keras_newton.models.multi_digit_cnn`) on sets of ``n`` four-digit
numbers with a differentiable sorting relaxation (NeuralSort, SoftSort or a sorting network),
as the baseline (the relaxation's ranking loss) and as Newton losses (Hessian, Fisher) over
seeds. Validation exact match is measured every ``eval_every`` steps; the test accuracy is
reported at the best validation point (diffsort protocol). Prints a Table-1-style table
(exact match and element-wise accuracy, mean ± std, Welch's t-test against the baseline,
step-time ratio to the baseline measured in the same run) and writes ``results.json`` and
``convergence.png`` to ``--out``.

CPU defaults: n = 5, NeuralSort, batch 10 sets, 400 steps, 3 seeds (about 15-20 minutes on
2 cores). ``--tikhonov`` with a comma list sweeps lambda instead: every Newton variant at
every value, the table marking per variant the value with the best mean validation exact
match (how the per-relaxation defaults below were chosen). ``--paper`` (a GPU machine): the
paper's batch of 100 sets, 100k steps, Adam 1e-3 and 10 seeds; the diffsort protocol's
evaluation every 1000 steps on 5000 validation sets, 10000 test sets, selection on EM5; full
MNIST; lambda swept over the paper's 1e-3 .. 1e3 read in the batch-mean convention
(`keras_newton.tikhonov`; 0.1 .. 1e5 for the Hessians, 10 .. 1e7 for the Fisher in ours).

Two engines: ``keras`` (default) trains one run at a time from a host pipeline;
``--engine device`` trains every run side by side in one compiled step with the sets drawn
on the device (`keras_newton.app.ranking_device`, for accelerators; ``--time-budget`` and
``--mixed-precision`` belong to it).
"""

import math
import time

import numpy as np

from keras_newton.app import common


_recipes = common.recipes


def _tikhonov_scale():
    from keras_newton import tikhonov

    return tikhonov


# Module attributes read from the library on first use (PEP 562). RELAXATIONS, VARIANTS:
# the recipes' names; DEFAULT_TIKHONOV: the default tikhonov per relaxation and curvature,
# the library's documented values (how they were chosen:
# `keras_newton.recipes.RANKING_TIKHONOV` and docs/results.md).
_FROM_RECIPES = {"RELAXATIONS": "RANKING_RELAXATIONS", "VARIANTS": "RANKING_VARIANTS",
                 "DEFAULT_TIKHONOV": "RANKING_TIKHONOV"}

__getattr__ = common.recipe_attributes(__name__, _FROM_RECIPES)


CPU_DEFAULTS = dict(
    relaxation="neuralsort", n=5, variants=["baseline", "hessian", "fisher"], seeds=[0, 1, 2],
    steps=400, batch_size=10, learning_rate=1e-3, eval_every=100, tau=1.0, power=1.0,
    steepness=10.0, distribution="cauchy", network="odd_even", art_lambda=0.25,
    tikhonov=None, data="auto", validation_sets=200, test_sets=500, eval_batch_size=100,
    jit_compile=False, warmup_steps=10, require_full_mnist=False,
    tikhonov_convention="per_sample", select_on="exact_match",
    engine="keras", time_budget_s=None, mixed_precision=False,
)
#: ``keras``: one run at a time, sets from a host pipeline (`train_one`); ``device``: all
#: runs side by side in one compiled step, sets drawn on the device
#: (`keras_newton.app.ranking_device`).
ENGINES = ("keras", "device")
#: The paper's grid of lambda, 1e-3 .. 1e3, read in the batch-mean convention
#: (`keras_newton.tikhonov`): with 100 sets per batch it covers our lambda 0.1 .. 1e5 for the
#: Hessians and 10 .. 1e7 for the Fisher.
PAPER_TIKHONOV_GRID = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0]
# The paper states: 100k steps, batch size 100, 10 seeds, Adam at learning rate 1e-3, lambda
# tuned in 1e-3 .. 1e3. From the diffsort protocol the paper builds on: evaluation every 1000
# steps on 5000 validation sets (the last 5000 training images), test on 10000
# sets, the test accuracy taken at the best validation "EM5" (exact match of the first 5
# items of a set; plain exact match for n <= 5). diffsort's own learning rate is 10^-3.5.
PAPER = dict(steps=100_000, batch_size=100, learning_rate=1e-3, eval_every=1000,
             seeds=list(range(10)), validation_sets=5000, test_sets=10000,
             require_full_mnist=True, jit_compile=True, tikhonov=PAPER_TIKHONOV_GRID,
             tikhonov_convention="batch_mean", select_on="em5")
SELECT_ON = ("exact_match", "em5")
QUICK = dict(steps=6, eval_every=3, seeds=[0, 1], batch_size=4, validation_sets=8,
             test_sets=8, eval_batch_size=8, warmup_steps=1, data="bundled")


def make_config(preset="cpu", **overrides):
    """The benchmark's settings: ``preset`` in ``"cpu"``, ``"paper"``, ``"quick"``."""
    return common.preset_config(CPU_DEFAULTS, {"cpu": {}, "paper": PAPER, "quick": QUICK},
                                preset, overrides, validate_config)


def validate_config(config):
    config = dict(config)
    relaxations, variants = _recipes().RANKING_RELAXATIONS, _recipes().RANKING_VARIANTS
    if config["relaxation"] not in relaxations:
        raise ValueError(f"relaxation must be one of {relaxations}; "
                         f"received {config['relaxation']!r}.")
    unknown = [v for v in config["variants"] if v not in variants]
    if unknown:
        raise ValueError(f"Unknown variants {unknown}; expected some of {variants}.")
    if not config["variants"]:
        raise ValueError(f"variants must be a non-empty list of {variants}; received "
                         f"{config['variants']!r}.")
    for key, low in (("n", 2), ("steps", 1), ("batch_size", 1), ("eval_every", 1),
                     ("validation_sets", 1), ("test_sets", 1), ("eval_batch_size", 1),
                     ("warmup_steps", 0)):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{key} must be an integer >= {low}; received {value!r}.")
    lr = config["learning_rate"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (
            math.isfinite(lr) and lr > 0):
        raise ValueError(f"learning_rate must be a positive finite number; received {lr!r}.")
    if config["eval_every"] > config["steps"]:
        config["eval_every"] = config["steps"]
    config.setdefault("tikhonov_convention", "per_sample")
    config.setdefault("select_on", "exact_match")
    if config["tikhonov_convention"] not in _tikhonov_scale().CONVENTIONS:
        raise ValueError(f"tikhonov_convention must be one of {_tikhonov_scale().CONVENTIONS}; "
                         f"received {config['tikhonov_convention']!r}.")
    config.setdefault("engine", "keras")
    config.setdefault("time_budget_s", None)
    config.setdefault("mixed_precision", False)
    if config["engine"] not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}; received {config['engine']!r}.")
    budget = config["time_budget_s"]
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                               or not (math.isfinite(budget) and budget > 0)):
        raise ValueError(f"time_budget_s must be a positive number of seconds; received "
                         f"{budget!r}.")
    if config["engine"] != "device":
        for key, flag, off in (("time_budget_s", "--time-budget", None),
                               ("mixed_precision", "--mixed-precision", False)):
            if config[key] not in (off,):
                raise ValueError(f"{key} ({flag}) needs engine='device' (--engine device); "
                                 f"received engine={config['engine']!r}.")
    if config["select_on"] not in SELECT_ON:
        raise ValueError(f"select_on must be one of {SELECT_ON}; received "
                         f"{config['select_on']!r}.")
    given = config.get("tikhonov")
    given_for = (set(given) if isinstance(given, dict)
                 else set() if given is None or (isinstance(given, (list, tuple))
                                                 and len(given) > 1)
                 else set(_recipes().RANKING_TIKHONOV[config["relaxation"]]))
    config["tikhonov"], config["tikhonov_grid"] = _tikhonov_settings(
        config["relaxation"], given, config.get("tikhonov_grid"))
    # config["tikhonov"] is kept in the config's convention (converted where a loss is
    # built), so validating a validated config changes nothing; the documented defaults
    # are ours and are expressed in that convention.
    config["tikhonov"] = {v: (lam if v in given_for else lam / _per_sample(config, v, 1.0))
                          for v, lam in config["tikhonov"].items()}
    return config


def _per_sample(config, variant, lam):
    """Our (per-sample) lambda of ``lam`` given in the config's convention."""
    return _tikhonov_scale().to_per_sample(lam, variant, config["batch_size"],
                                        config.get("tikhonov_convention", "per_sample"))


def _tikhonov_settings(relaxation, given, grid):
    """``(lambda per variant, sweep grid or None)`` from a number, a dict or a list."""
    tik = dict(_recipes().RANKING_TIKHONOV[relaxation])
    if isinstance(given, (list, tuple)):
        if len(given) == 0:
            raise ValueError("tikhonov must be a number or a non-empty list of numbers.")
        grid, given = (given, None) if len(given) > 1 else (grid, given[0])
    if isinstance(given, (int, float)):
        tik = {k: float(given) for k in tik}
    elif isinstance(given, dict):
        tik.update({k: float(v) for k, v in given.items()})
    elif given is not None:
        raise TypeError(f"tikhonov must be a number, a list or a dict; received {given!r}.")
    if grid is not None:
        grid = common.check_tikhonov_grid(grid)
    for v, lam in tik.items():
        if not (math.isfinite(lam) and lam >= 0):
            raise ValueError(f"tikhonov for {v} must be finite and >= 0; received {lam}.")
    return tik, grid


RELAXATION_KEYS = ("tau", "power", "steepness", "distribution", "network", "art_lambda")


def make_relaxation(config):
    """The config's sorting relaxation (`keras_newton.recipes.ranking_relaxation`)."""
    return _recipes().ranking_relaxation(config["relaxation"],
                                      **{k: config[k] for k in RELAXATION_KEYS})


def make_loss(config, variant, tikhonov=None):
    """``(loss, base_loss)`` of one variant (`keras_newton.recipes.ranking_loss`);
    ``tikhonov`` (our per-sample scale) overrides the config's value, which is in the
    config's ``tikhonov_convention`` and converted here."""
    if variant != "baseline" and tikhonov is None:
        tikhonov = _per_sample(config, variant, config["tikhonov"][variant])
    return _recipes().ranking_loss(variant, config["relaxation"], tikhonov,
                                **{k: config[k] for k in RELAXATION_KEYS})


def load_data(config, verbose=True):
    from keras_newton.datasets import load_mnist

    mnist, info = load_mnist(config["data"], verbose=verbose, return_source=True)
    if config["require_full_mnist"] and info["kind"] == "bundled":
        raise ValueError(
            "The paper preset needs full MNIST, but only the bundled subset was found: pass "
            "--data PATH_TO_mnist.npz or set $KERAS_NEWTON_MNIST (or --data bundled to run "
            "the preset on the subset anyway).")
    return mnist, info


def train_one(mnist, variant, seed, config, progress=True, prefix="", tikhonov=None):
    """One training run; returns its record (curve, best-validation test accuracy, times).

    ``tikhonov`` (a sweep's value) overrides the config's lambda for ``variant``.
    """
    import keras

    from keras_newton.callbacks import BestValidation
    from keras_newton.datasets import four_digit_datasets
    from keras_newton.metrics import ElementwiseRankAccuracy, ExactMatchAccuracy
    from keras_newton.metrics import BaseLoss
    from keras_newton.models import multi_digit_cnn

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    n = config["n"]
    train, val, test = four_digit_datasets(
        mnist, n, batch_size=config["batch_size"],
        num_validation_sets=config["validation_sets"], num_test_sets=config["test_sets"],
        eval_batch_size=config["eval_batch_size"], seed=seed)
    model = multi_digit_cnn(n)
    loss, base = make_loss(config, variant, tikhonov)
    if variant != "baseline":
        tikhonov = float(loss.tikhonov)
    metrics = [BaseLoss(base), ExactMatchAccuracy(), ElementwiseRankAccuracy()]
    # The validation metric that selects the best step: exact match, or diffsort's EM5.
    select = "exact_match"
    if config.get("select_on") == "em5" and n > 5:
        select = "exact_match_first5"
        metrics.append(ExactMatchAccuracy(first=5, name=select))
    model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]), loss=loss,
                  metrics=metrics, jit_compile=config["jit_compile"])
    timer = common.step_timer()
    # Validation after every `eval_every` steps (one Keras epoch); the best weights on the
    # selection metric are restored at the end of training (`keras_newton.callbacks`).
    best = BestValidation(val, monitor=f"val_{select}", mode="max")
    t0 = time.perf_counter()
    printer = common.epoch_printer(lambda epoch, logs, elapsed: (
        f"{prefix} step {(epoch + 1) * config['eval_every']}/{config['steps']}: base_loss "
        f"{float(logs.get('base_loss', float('nan'))):.4f}, val exact match "
        f"{100 * logs['val_exact_match']:.2f}% ({elapsed:.0f} s)"), progress)

    epochs = max(1, config["steps"] // config["eval_every"])
    # `train` is an endless stream of fresh random sets (tf.data on the TensorFlow backend,
    # a NumPy `keras.utils.PyDataset` on the others: the same sets); nothing to shuffle.
    history = model.fit(train, steps_per_epoch=config["eval_every"], epochs=epochs,
                        shuffle=False, verbose=0, callbacks=[timer, best, printer])
    curve = {"step": [e * config["eval_every"] for e in best.epochs],
             "val_exact_match": best.history["val_exact_match"],
             "val_elementwise": best.history["val_elementwise_accuracy"],
             "base_loss": [float(v) for v in history.history.get(
                 "base_loss", [float("nan")] * len(best.epochs))]}
    if best.best_epoch is None:  # no finite validation score: test the final weights
        best_step, best_val = None, None
    else:
        best_step = best.best_epoch * config["eval_every"]
        best_val = curve["val_exact_match"][best.best_epoch - 1]
    result = model.evaluate(test, verbose=0, return_dict=True)
    return {
        "variant": variant, "seed": seed,
        "tikhonov": tikhonov,
        "test_exact_match": float(result["exact_match"]),
        "test_elementwise": float(result["elementwise_accuracy"]),
        "best_step": best_step, "best_val_exact_match": best_val,
        "curve": curve,
        "diverged": not all(math.isfinite(v) for v in curve["base_loss"]),
        "step_time": common.step_time_stats(timer.times, config["warmup_steps"]),
        "wall_s": time.perf_counter() - t0,
    }


def _groups(config):
    """``[(label, variant, tikhonov or None)]``: a variant, or one per sweep value (the
    per-sample lambda of each grid value, `keras_newton.tikhonov`)."""
    groups = []
    for v in config["variants"]:
        if v == "baseline" or not config.get("tikhonov_grid"):
            groups.append((v, v, None))
        else:
            for lam in config["tikhonov_grid"]:
                ours = _per_sample(config, v, lam)
                groups.append((f"{v} λ={ours:g}", v, ours))
    return groups


def _runs_of(runs, variant, tikhonov=None):
    """The runs of ``variant`` (at ``tikhonov`` when given: one sweep value)."""
    return [r for r in runs if r["variant"] == variant
            and (tikhonov is None or r["tikhonov"] == tikhonov)]


def summarize(runs, config):
    """One row per variant (per variant and lambda in a sweep): accuracies over seeds, the
    mean best validation exact match, Welch test against the baseline, step-time ratio."""
    by_group, variant_of = {}, {}
    for label, variant, lam in _groups(config):
        by_group[label] = _runs_of(runs, variant, lam)
        variant_of[label] = variant
    rows = common.variant_rows(by_group, {
        "test_exact_match": lambda r: 100 * r["test_exact_match"],
        "test_elementwise": lambda r: 100 * r["test_elementwise"],
        "val_exact_match": lambda r: 100 * r["best_val_exact_match"],
    })
    for row in rows:
        row["group"], row["variant"] = row["variant"], variant_of[row["variant"]]
    return rows


def select_tikhonov(summary):
    """Per Newton variant, the lambda with the highest mean best-validation exact match
    (the first in grid order on ties): how a sweep picks its defaults, never on test."""
    scores = {}
    for row in summary:
        if row["variant"] != "baseline":
            scores.setdefault(row["variant"], []).append(
                (row["tikhonov"], row["val_exact_match"]["mean"]))
    return {v: common.pick_best(pairs) for v, pairs in scores.items()}


def run_benchmark(config, progress=True, mnist=None, store=None, source=None):
    """Every variant (x lambda in a sweep) x seed of ``config``; returns a JSON-serialisable
    results dict (with ``selected_tikhonov`` in a sweep).

    ``mnist`` (with its ``source`` description) is loaded when not given; ``store`` (a
    `keras_newton.app.common.ResultsStore`) receives each finished run, and its stored runs
    are not run again.
    """
    config = validate_config(config)
    t0 = time.perf_counter()
    if mnist is None:
        mnist, info = load_data(config, verbose=progress)
    else:
        info = source or {"kind": "given"}
    jobs = [(label, v, lam, s) for s in config["seeds"] for label, v, lam in _groups(config)]

    def prefix(i, n, job):
        label, _, _, seed = job
        return f"[{i}/{n}] {config['relaxation']} n={config['n']} {label} seed {seed}"

    def train(job, prefix):
        _, variant, lam, seed = job
        run = train_one(mnist, variant, seed, config, progress, prefix, tikhonov=lam)
        if progress:
            print(f"{prefix}: test exact match {100 * run['test_exact_match']:.2f}% "
                  f"(element-wise {100 * run['test_elementwise']:.2f}%) at step "
                  f"{run['best_step']}; step {1e3 * run['step_time']['median_s']:.1f} ms; "
                  f"{run['wall_s']:.0f} s", flush=True)
        return run

    if config["engine"] == "device":
        runs = _train_jobs_side_by_side(jobs, mnist, config, store, progress)
    else:
        runs = common.run_jobs(jobs, train, store, progress, prefix)
    summary = summarize(runs, config)
    results = {"benchmark": "ranking", "config": config, "data": info,
               "environment": common.environment(), "runs": runs, "summary": summary,
               "wall_time_s": time.perf_counter() - t0}
    if config.get("tikhonov_grid"):
        results["selected_tikhonov"] = select_tikhonov(summary)
    return results


def _train_jobs_side_by_side(jobs, mnist, config, store, progress):
    """The device engine: every job not in ``store`` trained at once
    (`keras_newton.app.ranking_device`); returns the runs in job order."""
    from keras_newton.app import ranking_device

    stored = {job: store.get(job) if store is not None else None for job in jobs}
    todo = [job for job in jobs if stored[job] is None]
    if progress and len(todo) < len(jobs):
        print(f"{len(jobs) - len(todo)} run(s) in results.json, not run again", flush=True)
    if todo:
        prefix = (f"{config['relaxation']} n={config['n']}, {len(todo)} runs side by side "
                  f"({', '.join(sorted({label for label, _, _, _ in todo}))})")
        records = ranking_device.train_side_by_side(
            mnist, config, [(v, lam, seed) for _, v, lam, seed in todo], make_loss,
            progress, prefix)
        for job, run in zip(todo, records):
            if progress:
                label, _, _, seed = job
                print(f"{label} seed {seed}: test exact match "
                      f"{100 * run['test_exact_match']:.2f}% (element-wise "
                      f"{100 * run['test_elementwise']:.2f}%) at step {run['best_step']}",
                      flush=True)
            if store is not None:
                store.add(job, run)
            stored[job] = run
    return [stored[job] for job in jobs]


def format_table(results):
    c = results["config"]
    sweep = bool(c.get("tikhonov_grid"))
    selected = results.get("selected_tikhonov", {})
    title = (f"Four-digit MNIST ranking, {c['relaxation']} n={c['n']}: test accuracy (%) at "
             f"the best validation step, {len(c['seeds'])} seeds, {c['steps']} steps, "
             f"batch {c['batch_size']}")
    val_head = f" {'val exact':>14}" if sweep else ""
    lines = [title, "-" * len(title),
             f"{'variant':<20} {'tikhonov':>8}{val_head} {'exact match':>16} "
             f"{'element-wise':>16} {'p (Welch)':>9} {'step ratio':>10}"]
    for row in results["summary"]:
        em, ew, val = row["test_exact_match"], row["test_elementwise"], row["val_exact_match"]
        tik = "-" if row["tikhonov"] is None else f"{row['tikhonov']:g}"
        p = "-" if em["p_value"] is None else f"{em['p_value']:.3f}"
        ratio = "-" if row["step_time_ratio"] is None else f"{row['step_time_ratio']:.2f}x"
        star = "*" if (sweep and row["variant"] != "baseline"
                       and selected.get(row["variant"]) == row["tikhonov"]) else " "
        val_cell = f" {val['mean']:>7.2f} ± {val['std']:<5.2f}" if sweep else ""
        lines.append(f"{row['variant']:<20} {tik:>7}{star}{val_cell} "
                     f"{em['mean']:>7.2f} ± {em['std']:<5.2f}{common.mark(em):>2} "
                     f"{ew['mean']:>7.2f} ± {ew['std']:<5.2f}  {p:>9} {ratio:>10}")
    lines.append("++ / --: significantly better / worse than the baseline (Welch, alpha "
                 f"{common.ALPHA}); +: better mean. Step ratio: median training-step time "
                 "over the baseline's, same run.")
    if c.get("engine") == "device":
        run = results["runs"][0] if results["runs"] else None
        if run is not None:
            k, ms = run["runs_side_by_side"], 1e3 * run["step_time"]["median_s"]
            lines.append(
                f"Device engine: {k} runs side by side in one step ({ms:.1f} ms per step, "
                f"{1e3 / ms:.1f} steps/s; step ratios are 1 by construction), "
                f"{run['steps_done']} of {c['steps']} steps done"
                + (f" in the {c['time_budget_s']:g} s budget" if c.get("time_budget_s")
                   else "") + (", mixed_bfloat16 CNNs" if c.get("mixed_precision") else "")
                + ".")
    if sweep:
        picks = ", ".join(f"{v} {lam:g}" for v, lam in selected.items())
        lines.append("Sweep: 'val exact' is the mean best validation exact match; * marks "
                     f"each variant's lambda with the highest (selected: {picks}).")
    return "\n".join(lines)


def plot(results, path):
    curves = {}
    for row in results["summary"]:
        rs = _runs_of(results["runs"], row["variant"], row["tikhonov"])
        ys = np.array([r["curve"]["val_exact_match"] for r in rs]) * 100
        curves[row["group"]] = (rs[0]["curve"]["step"], ys.mean(0), ys.std(0))
    c = results["config"]
    return common.plot_convergence(curves, path,
                                   title=f"{c['relaxation']} n={c['n']}: validation")


def register(subparsers):
    p = subparsers.add_parser("ranking", help="four-digit MNIST ranking (paper Table 1)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--relaxation", help="neuralsort (default), softsort or diffsort")
    p.add_argument("--n", type=int, help="items per set (default 5)")
    p.add_argument("--variants", type=common.parse_list,
                   help="comma list of baseline, hessian, fisher, hessian_elementwise")
    p.add_argument("--tikhonov", type=lambda s: common.parse_list(s, float),
                   help="lambda for every Newton variant (default: the documented "
                   "per-relaxation value); a comma list (e.g. 1e-3,1e-2,0.1,1) sweeps it: "
                   "every Newton variant at every value, the table marking the lambda with "
                   "the best mean validation exact match")
    p.add_argument("--tikhonov-convention", choices=("per_sample", "batch_mean"),
                   help="scale of the --tikhonov values: per_sample (ours, the default) or "
                   "batch_mean (lambda of a batch-mean loss, converted: x batch size for the "
                   "Hessians, x batch size^2 for the Fisher; --paper's default)")
    p.add_argument("--select-on", choices=SELECT_ON,
                   help="validation metric picking the best step: exact_match (default) or "
                   "em5, exact match of the first 5 items (diffsort; --paper's default)")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int, help="sets per batch")
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--seeds", type=common.parse_seeds,
                   help="comma list of distinct seeds, e.g. 0,1,2 (default 0,1,2)")
    p.add_argument("--tau", type=float, help="NeuralSort / SoftSort temperature")
    p.add_argument("--power", type=float, help="SoftSort distance power")
    p.add_argument("--steepness", type=float, help="DiffSort steepness")
    p.add_argument("--distribution", help="DiffSort swap distribution")
    p.add_argument("--network", choices=("odd_even", "bitonic"))
    p.add_argument("--validation-sets", type=int)
    p.add_argument("--test-sets", type=int)
    p.add_argument("--data", help="MNIST source: auto, bundled, keras_cache, download, PATH")
    p.add_argument("--jit-compile", action="store_true", default=None)
    p.add_argument("--engine", choices=ENGINES,
                   help="keras (default): one run at a time, sets from a host pipeline; "
                   "device: every run side by side in one compiled step, the sets drawn on "
                   "the device (for accelerators; docs/reproducing.md)")
    p.add_argument("--time-budget", type=float, dest="time_budget_s", metavar="SECONDS",
                   help="--engine device: stop at the last evaluation that fits this "
                   "wall-clock budget (compilation included)")
    p.add_argument("--mixed-precision", action="store_true", default=None,
                   help="--engine device: CNNs in mixed_bfloat16 (scores, relaxation, loss "
                   "and Newton step stay float32)")
    common.add_run_options(p, "results/ranking")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--paper", action="store_true", help="the paper's settings (GPU)")
    group.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    p.set_defaults(func=run)


def _overrides(args, keys):
    overrides = {k: getattr(args, k) for k in keys}
    if args.data is not None:
        overrides["require_full_mnist"] = False  # an explicit source is the user's call
    return overrides


def run(args):
    preset = "paper" if args.paper else "quick" if args.quick else "cpu"
    keys = ("relaxation", "n", "variants", "tikhonov", "steps", "batch_size",
            "learning_rate", "eval_every", "seeds", "tau", "power", "steepness",
            "distribution", "network", "validation_sets", "test_sets", "data", "jit_compile",
            "tikhonov_convention", "select_on", "engine", "time_budget_s",
            "mixed_precision")

    def settings():
        config = make_config(preset, **_overrides(args, keys))
        make_relaxation(config)  # the library checks tau, power, steepness...: before data
        return config

    return common.run_bench(
        args, "ranking", settings,
        load_data,
        lambda config, data, store: run_benchmark(config, mnist=data[0], source=data[1],
                                                  store=store),
        format_table, plot)

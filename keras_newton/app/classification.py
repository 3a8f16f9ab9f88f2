"""``keras-newton bench classification``: MNIST classification, paper Table 4.

Petersen et al. (NeurIPS 2024), Section 5.3: softmax cross-entropy on MNIST, trained
directly (baseline) and through its Newton losses (element-wise Hessian, empirical Hessian,
empirical Fisher; Definitions 1-3), with SGD and Adam, over several seeds and the models
M1-M5 (`keras_newton.models.classification`). Softmax cross-entropy is well behaved, so the
paper expects no gain; it reports Newton (Hessian) indistinguishable from the baseline and
Newton (Fisher) better with SGD.

Printed: test and validation accuracy mean +- std (sample std, ddof=1) over seeds for
every model x optimizer x variant at epoch 1 and at the final epoch, a Welch t-test of each Newton variant
against the baseline (``scipy.stats.ttest_ind(equal_var=False)``, alpha 0.05), and each
variant's training step time as a ratio to the baseline's, measured in the same run (median
per-batch time after warm-up steps). Written: ``results.json`` (config, data source,
environment, every per-seed number, the summary) and ``table.txt`` under ``--out``.

Every run of a given seed starts from the same initial weights and the same data order, so
the variants are compared on paired starts.

Validation: the last ``validation`` training digits are held out (default: a twelfth of the
training digits, 5000 of full MNIST's 60000, i.e. the 55k / 5k split); test digits are
never used for any choice. Tikhonov sweep: ``--tikhonov 1e-3,1e-2,0.1,1`` runs every Newton
variant at every value (the baseline once) and picks, per model x optimizer x variant, the
value with the best mean validation accuracy at the final epoch (the first on ties); the
summary and its Welch tests use each variant's pick. With ``--sweep-seeds 0`` the sweep runs
on those seeds only, then every seed of ``--seeds`` runs at the picked values (sweep runs at a
picked value are reused, being identical).

Presets: the default is CPU-sized (bundled 10k-digit subset, M1 and M5, 3 seeds, 2 epochs,
about 10 minutes on 2 cores); ``--paper`` is the paper's setting (full MNIST, M1-M5, 20
seeds, accuracy after epochs 1 and 200: a GPU job); ``--quick`` is a seconds-long smoke
run. Options given explicitly override the preset.

Hyperparameters the paper does not state are our choices: batch size 100, SGD (no
momentum) learning rate 0.1, Adam 1e-3, Tikhonov lambda 1.0 (with SGD at 0.1, lambda of
1e-2 .. 1e-1 makes the Hessian variants diverge in a first epoch on MNIST: the Newton step
then amplifies the gradient by up to 1 / lambda).
"""

import math
import os
import statistics
import time

import numpy as np

from keras_newton.app import common
from keras_newton.app.common import welch_test  # noqa: F401  (re-exported)


_recipes = common.recipes


#: The recipes' variants (`keras_newton.recipes.CLASSIFICATION_VARIANTS`; the tests check
#: they are equal), written out so that the command line parses without Keras.
VARIANTS = ("baseline", "hessian_elementwise", "hessian", "fisher")
VARIANT_LABELS = {
    "baseline": "Baseline",
    "hessian_elementwise": "NL (e.w. H)",
    "hessian": "NL (H)",
    "fisher": "NL (F)",
}
OPTIMIZERS = ("sgd", "adam")
OPTIMIZER_LABELS = {"sgd": "SGD", "adam": "Adam"}
MODEL_NAMES = ("M1", "M2", "M3", "M4", "M5")
ALPHA = common.ALPHA

DEFAULTS = {
    "models": ["M1", "M5"],
    "optimizers": ["sgd", "adam"],
    "variants": list(VARIANTS),
    "seeds": [0, 1, 2],
    "epochs": 2,
    "batch_size": 100,
    "lr_sgd": 0.1,
    "lr_adam": 1e-3,
    "tikhonov": 1.0,  # keras_newton.recipes.CLASSIFICATION_TIKHONOV (checked by the tests)
    "sweep_seeds": None,
    "validation": None,
    "data": "bundled",
    "require_full_mnist": False,
    "max_train": None,
    "max_test": None,
    "warmup_steps": 5,
    "preset": "cpu",
}
PRESETS = {
    "cpu": {},
    "paper": {
        "models": list(MODEL_NAMES),
        "seeds": list(range(20)),
        "epochs": 200,
        "data": "auto",
        "require_full_mnist": True,
        "preset": "paper",
    },
    "quick": {
        "models": ["M1"],
        "optimizers": ["sgd"],
        "seeds": [0, 1],
        "epochs": 1,
        "max_train": 1000,
        "max_test": 500,
        "warmup_steps": 2,
        "preset": "quick",
    },
}


# -- configuration ---------------------------------------------------------------------


def make_config(preset="cpu", **overrides):
    """A complete benchmark config: `DEFAULTS`, then the preset, then non-None overrides.

    Args:
        preset: ``"cpu"``, ``"paper"`` or ``"quick"``.
        **overrides: any key of `DEFAULTS`; ``None`` values are ignored.

    Returns:
        A validated config dict (see `validate_config`).
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}; received {preset!r}.")
    config = dict(DEFAULTS)
    config.update(PRESETS[preset])
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"Unknown config keys {sorted(unknown)}; expected keys of DEFAULTS.")
    config.update({k: v for k, v in overrides.items() if v is not None})
    return validate_config(config)


def tikhonov_grid(config):
    """The sweep's lambdas (a list), or ``None`` when ``config`` fixes tikhonov."""
    tik = config["tikhonov"]
    return list(tik) if isinstance(tik, (list, tuple)) else None


def _tikhonov_for(config, variant):
    tik = config["tikhonov"]
    return tik[variant] if isinstance(tik, dict) else tik


def validate_config(config):
    """Checks a config dict, normalising names; raises ValueError naming the bad key."""
    config = dict(config)
    missing = set(DEFAULTS) - set(config)
    if missing:
        raise ValueError(f"config lacks {sorted(missing)}.")

    def names(key, allowed, normalise):
        values = [normalise(v) for v in config[key]]
        bad = [v for v in values if v not in allowed]
        if not values or bad:
            raise ValueError(
                f"{key} must be a non-empty list of {', '.join(allowed)}; received "
                f"{config[key]!r}."
            )
        if len(set(values)) != len(values):
            raise ValueError(f"{key} has duplicates: {config[key]!r}.")
        return values

    config["models"] = names("models", MODEL_NAMES, lambda v: str(v).upper())
    config["optimizers"] = names("optimizers", OPTIMIZERS, lambda v: str(v).lower())
    config["variants"] = names("variants", VARIANTS, lambda v: str(v).lower())
    seeds = config["seeds"]
    if (not isinstance(seeds, (list, tuple)) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                       for s in seeds) or len(set(seeds)) != len(seeds)):
        raise ValueError(f"seeds must be a non-empty list of distinct integers >= 0; "
                         f"received {seeds!r}.")
    config["seeds"] = list(seeds)
    for key in ("epochs", "batch_size"):
        v = config[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{key} must be a positive integer; received {v!r}.")
    for key in ("warmup_steps",):
        v = config[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{key} must be an integer >= 0; received {v!r}.")
    for key in ("max_train", "max_test"):
        v = config[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{key} must be a positive integer or None; received {v!r}.")
    for key in ("lr_sgd", "lr_adam"):
        v = config[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 \
                or not math.isfinite(v):
            raise ValueError(f"{key} must be a positive finite number; received {v!r}.")
        config[key] = float(v)
    tik = config["tikhonov"]
    if isinstance(tik, (list, tuple)):
        tik = common.check_tikhonov_grid(tik)
        if len(tik) == 1:
            tik = tik[0]
    if isinstance(tik, list):
        values = []
    elif isinstance(tik, dict):
        newton = [v for v in config["variants"] if v != "baseline"]
        lacking = [v for v in newton if v not in tik]
        if lacking:
            raise ValueError(f"tikhonov gives no value for {lacking}; received {tik!r}.")
        values = list(tik.values())
    else:
        values = [tik]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 \
                or not math.isfinite(v):
            raise ValueError(f"tikhonov must be a number >= 0 or a dict variant -> number "
                             f">= 0; received {tik!r}.")
    config["tikhonov"] = ({k: float(v) for k, v in tik.items()} if isinstance(tik, dict)
                          else tik if isinstance(tik, list) else float(tik))
    v = config["validation"]
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
        raise ValueError(f"validation must be an integer >= 0 (held-out training digits) or "
                         f"None (a twelfth of them); received {v!r}.")
    grid = tikhonov_grid(config)
    if grid is not None and v == 0:
        raise ValueError("validation must be > 0 for a tikhonov sweep: the pick is made on "
                         "validation accuracy, never on test.")
    sweep = config["sweep_seeds"]
    if sweep is not None:
        if grid is None:
            raise ValueError(f"sweep_seeds needs a tikhonov sweep (a list of values); "
                             f"received tikhonov {config['tikhonov']!r}.")
        if (not isinstance(sweep, (list, tuple)) or not sweep
                or not all(isinstance(s, int) and not isinstance(s, bool) for s in sweep)
                or len(set(sweep)) != len(sweep) or not set(sweep) <= set(config["seeds"])):
            raise ValueError(f"sweep_seeds must be a non-empty list of distinct seeds among "
                             f"seeds {config['seeds']}; received {sweep!r}.")
        config["sweep_seeds"] = list(sweep)
    if not isinstance(config["data"], str):
        raise ValueError(f"data must be a load_mnist source string; received "
                         f"{config['data']!r}.")
    config["eval_epochs"] = sorted({1, config["epochs"]})
    return config


# -- data ------------------------------------------------------------------------------


def load_data(config, verbose=True):
    """MNIST for the benchmark: ``((x, y), (x_test, y_test)), source_info``.

    Images stay uint8 (the models rescale); labels become int32. ``max_train`` /
    ``max_test`` keep the first rows (the bundled subset's order is already mixed).
    """
    from keras_newton.datasets.mnist import load_mnist

    ((x, y), (xt, yt)), info = load_mnist(config["data"], verbose=verbose,
                                          return_source=True)
    if config["require_full_mnist"] and info["kind"] == "bundled":
        raise ValueError(
            "The paper preset needs full MNIST, but only the bundled subset was found: pass "
            "--data PATH_TO_mnist.npz, set $KERAS_NEWTON_MNIST, or --data download (online); "
            "--data bundled runs the preset on the subset anyway."
        )
    x, y = x[: config["max_train"]], y[: config["max_train"]].astype("int32")
    xt, yt = xt[: config["max_test"]], yt[: config["max_test"]].astype("int32")
    info = dict(info, n_train=int(len(x)), n_test=int(len(xt)))
    return ((x, y), (xt, yt)), info


def split_validation(data, config):
    """``((x, y), (x_val, y_val), (x_test, y_test))``: the last ``config["validation"]``
    training digits held out (a twelfth when ``None``; none when 0). Test is untouched."""
    (x, y), test = data
    n_val = config["validation"]
    if n_val is None:
        n_val = len(x) // 12
    if n_val >= len(x):
        raise ValueError(f"validation must be smaller than the {len(x)} training digits; "
                         f"received {n_val}.")
    cut = len(x) - n_val
    return (x[:cut], y[:cut]), (x[cut:], y[cut:]), test


# -- one training run ------------------------------------------------------------------


def _progress_printer(keras, progress, epochs, prefix):
    """A Keras callback printing epoch progress (about ten lines per run)."""

    class Progress(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.every = max(1, epochs // 10)
            self.t_start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            done = epoch + 1
            if progress and (done == 1 or done == epochs or done % self.every == 0):
                logs = logs or {}
                print(f"{prefix} epoch {done}/{epochs}: base_loss "
                      f"{logs.get('base_loss', float('nan')):.4f}, train acc "
                      f"{logs.get('accuracy', float('nan')):.4f} "
                      f"({time.perf_counter() - self.t_start:.1f} s)", flush=True)

    return Progress()


def test_accuracy(model, x, y, batch_size=1000):
    """Fraction of ``x`` whose arg-max logit is the label ``y`` (eager calls, no tracing)."""
    from keras import ops

    correct = 0
    for i in range(0, len(x), batch_size):
        logits = ops.convert_to_numpy(model(x[i:i + batch_size], training=False))
        correct += int(np.sum(np.argmax(logits, axis=-1) == y[i:i + batch_size]))
    return correct / len(x)


def train_one(data, model_name, optimizer, variant, seed, config, progress=True,
              prefix="", tikhonov=None):
    """Trains one model; returns the run's record (accuracies, history, step times).

    ``data`` is ``(train, test)`` or ``(train, validation, test)`` (`split_validation`);
    ``tikhonov`` (a sweep's value) overrides the config's lambda for a Newton variant. The
    seed fixes the initial weights and the shuffling, identically for every variant.
    """
    import keras

    from keras_newton.metrics import BaseLoss
    from keras_newton.models.classification import classification_model

    if len(data) == 2:
        (x, y), (xt, yt) = data
        xv = yv = None
    else:
        (x, y), (xv, yv), (xt, yt) = data
    if variant != "baseline" and tikhonov is None:
        tikhonov = _tikhonov_for(config, variant)
        if isinstance(tikhonov, list):
            raise ValueError("tikhonov is a sweep: pass train_one one value, tikhonov=...")
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = classification_model(model_name)
    loss, base = _recipes().classification_loss(
        variant, None if variant == "baseline" else float(tikhonov))
    lr = config["lr_sgd"] if optimizer == "sgd" else config["lr_adam"]
    opt = keras.optimizers.SGD(lr) if optimizer == "sgd" else keras.optimizers.Adam(lr)
    # The same metrics for every variant, so the step times compare like with like.
    model.compile(opt, loss, metrics=[BaseLoss(base),
                                      keras.metrics.SparseCategoricalAccuracy("accuracy")])
    timer = common.step_timer()
    printer = _progress_printer(keras, progress, config["epochs"], prefix)
    history = {"base_loss": [], "accuracy": []}
    accuracies, val_accuracies = {}, {}
    done = 0
    t0 = time.perf_counter()
    for target in config["eval_epochs"]:
        h = model.fit(x, y, batch_size=config["batch_size"], epochs=target,
                      initial_epoch=done, shuffle=True, verbose=0,
                      callbacks=[timer, printer])
        for key in history:
            history[key].extend(float(v) for v in h.history.get(key, []))
        accuracies[str(target)] = test_accuracy(model, xt, yt)
        if xv is not None and len(xv):
            val_accuracies[str(target)] = test_accuracy(model, xv, yv)
        done = target
    wall = time.perf_counter() - t0
    return {
        "model": model_name,
        "optimizer": optimizer,
        "variant": variant,
        "seed": seed,
        "tikhonov": None if variant == "baseline" else float(tikhonov),
        "learning_rate": lr,
        "test_accuracy": accuracies,
        "validation_accuracy": val_accuracies,
        "history": history,
        "diverged": not all(math.isfinite(v) for v in history["base_loss"]),
        "step_time": common.step_time_stats(timer.times, config["warmup_steps"]),
        "wall_s": wall,
        "num_params": int(model.count_params()),
    }


# -- statistics ------------------------------------------------------------------------


def _index(runs):
    """``{(model, optimizer, variant, tikhonov, seed): run}`` (tikhonov None: baseline)."""
    return {(r["model"], r["optimizer"], r["variant"], r.get("tikhonov"), r["seed"]): r
            for r in runs}


def _val(run, epoch):
    """A run's validation accuracy at ``epoch`` (NaN without a validation split)."""
    return run.get("validation_accuracy", {}).get(str(epoch), float("nan"))


def select_tikhonov(runs, config):
    """Per model x optimizer x Newton variant, the swept lambda with the highest mean
    validation accuracy at the final epoch over the sweep seeds (``sweep_seeds``, else
    ``seeds``); the first in grid order on ties. Never looks at test accuracy.

    Returns ``{model: {optimizer: {variant: lambda}}}``; ``{}`` without a sweep.
    """
    grid = tikhonov_grid(config)
    if grid is None:
        return {}
    index, epoch = _index(runs), config["epochs"]
    seeds = config["sweep_seeds"] or config["seeds"]
    selected = {}
    for model in config["models"]:
        for opt in config["optimizers"]:
            for variant in config["variants"]:
                if variant == "baseline":
                    continue
                scores = [(lam, float(np.mean([_val(index[(model, opt, variant, lam, s)],
                                                    epoch) for s in seeds])))
                          for lam in grid]
                selected.setdefault(model, {}).setdefault(opt, {})[variant] = \
                    common.pick_best(scores)
    return selected


def _lambda(config, selected, model, opt, variant):
    """The lambda that the summary reports for a variant (None for the baseline)."""
    if variant == "baseline":
        return None
    if tikhonov_grid(config) is not None:
        return selected[model][opt][variant]
    return _tikhonov_for(config, variant)


def summarize(runs, config, selected=None):
    """One summary row per model x optimizer x variant x evaluated epoch, a Newton variant at
    its selected lambda in a sweep (``selected`` as `select_tikhonov` returns).

    Each row: the per-seed test accuracies (ordered as ``config["seeds"]``), their mean and
    sample std, the Welch test against the baseline's row and its verdict, the per-seed
    validation accuracies with their mean and std (``None`` without validation), the
    lambda, and the step-time median (median over seeds of per-run medians) and ratio to
    the baseline.
    """
    if selected is None:
        selected = select_tikhonov(runs, config)
    index = _index(runs)
    rows = []
    for model in config["models"]:
        for opt in config["optimizers"]:
            lam = {v: _lambda(config, selected, model, opt, v) for v in config["variants"]}
            group = {v: [index[(model, opt, v, lam[v], s)] for s in config["seeds"]]
                     for v in config["variants"]}
            step = {v: float(statistics.median(r["step_time"]["median_s"] for r in rs))
                    for v, rs in group.items()}
            for epoch in config["eval_epochs"]:
                accs = {v: [r["test_accuracy"][str(epoch)] for r in rs]
                        for v, rs in group.items()}
                for variant in config["variants"]:
                    baseline = (accs["baseline"] if "baseline" in accs
                                and variant != "baseline" else None)
                    row = {"model": model, "optimizer": opt, "variant": variant,
                           "epoch": epoch, "tikhonov": lam[variant],
                           "accuracies": accs[variant]}
                    row.update(common.compare(accs[variant], baseline))
                    row.update(_val_stats([_val(r, epoch) for r in group[variant]]))
                    row.update(step_time_median_s=step[variant], step_time_ratio=None)
                    if "baseline" in step:
                        row["step_time_ratio"] = step[variant] / step["baseline"]
                    rows.append(row)
    return rows


def _val_stats(values):
    if not values or not all(math.isfinite(v) for v in values):
        return {"val_accuracies": None, "val_mean": None, "val_std": None}
    a = np.asarray(values, float)
    return {"val_accuracies": list(values), "val_mean": float(a.mean()),
            "val_std": float(a.std(ddof=1)) if a.size > 1 else 0.0}


def sweep_summary(runs, config, selected):
    """The sweep's rows: per model x optimizer, the baseline and every Newton variant at
    every lambda, over the sweep seeds, at the final epoch: validation and test accuracy
    mean and std, and whether the lambda is the variant's pick. ``[]`` without a sweep."""
    grid = tikhonov_grid(config)
    if grid is None:
        return []
    index, epoch = _index(runs), config["epochs"]
    seeds = config["sweep_seeds"] or config["seeds"]
    rows = []
    for model in config["models"]:
        for opt in config["optimizers"]:
            for variant in config["variants"]:
                for lam in [None] if variant == "baseline" else grid:
                    rs = [index[(model, opt, variant, lam, s)] for s in seeds]
                    test = [r["test_accuracy"][str(epoch)] for r in rs]
                    row = {"model": model, "optimizer": opt, "variant": variant,
                           "tikhonov": lam, "epoch": epoch, "seeds": list(seeds),
                           "test_accuracies": test, "test_mean": float(np.mean(test)),
                           "test_std": float(np.std(test, ddof=1)) if len(test) > 1 else 0.0,
                           "selected": (lam is not None
                                        and selected[model][opt][variant] == lam),
                           "diverged": sum(bool(r["diverged"]) for r in rs)}
                    row.update(_val_stats([_val(r, epoch) for r in rs]))
                    rows.append(row)
    return rows


# -- the benchmark ---------------------------------------------------------------------


def _jobs(config, seeds, lambdas, with_baseline=True):
    """``[(model, optimizer, variant, lambda, seed)]``; ``lambdas(model, opt, variant)``
    lists a Newton variant's values."""
    return [(m, o, v, lam, s) for m in config["models"] for o in config["optimizers"]
            for s in seeds for v in config["variants"]
            for lam in ([None] if v == "baseline" else lambdas(m, o, v))
            if with_baseline or v != "baseline"]


def run_benchmark(config, progress=True, data=None, store=None):
    """Trains every model x optimizer x variant (x lambda in a sweep) x seed of ``config``.

    Without ``sweep_seeds`` a sweep runs every lambda on every seed. With it, stage 1 runs
    the Newton variants at every lambda on the sweep seeds, the picks are made on validation
    accuracy, and stage 2 runs the baseline and every variant at its pick on all ``seeds``
    (reusing stage-1 runs of the same seed and lambda).

    Args:
        config: a dict from `make_config` (validated again here).
        progress: print one line per run and epoch progress.
        data: optional preloaded ``(data, source_info)`` as `load_data` returns.
        store: optional `keras_newton.app.common.ResultsStore`: receives each finished
            run; its stored runs are not run again (``--resume``).

    Returns:
        ``{"config", "data", "environment", "runs", "summary", "wall_time_s"}`` and, in a
        sweep, ``"selected_tikhonov"`` (``{model: {optimizer: {variant: lambda}}}``) and
        ``"sweep"`` (`sweep_summary`'s rows); all JSON-serialisable. ``runs`` holds every
        per-seed record (with ``"stage"``: ``"sweep"`` or ``"final"``).
    """
    config = validate_config(config)
    t0 = time.perf_counter()
    if data is None:
        data, info = load_data(config, verbose=progress)
    else:
        data, info = data
    data = split_validation(data, config)
    info = dict(info, n_train=int(len(data[0][0])), n_validation=int(len(data[1][0])),
                n_test=int(len(data[2][0])))
    grid = tikhonov_grid(config)
    runs, done = [], set()

    def execute(jobs, stage):
        jobs = [j for j in jobs if j not in done]

        def prefix(i, n, job):
            model, opt, variant, lam, seed = job
            label = variant if lam is None or grid is None else f"{variant} λ={lam:g}"
            return f"[{stage} {i}/{n}] {model} {OPTIMIZER_LABELS[opt]} {label} seed {seed}"

        def train(job, prefix):
            model, opt, variant, lam, seed = job
            run = train_one(data, model, opt, variant, seed, config, progress, prefix,
                            tikhonov=lam)
            run["stage"] = stage
            if progress:
                accs = ", ".join(f"epoch {e}: {100 * a:.2f}%"
                                 for e, a in run["test_accuracy"].items())
                vals = ", ".join(f"epoch {e}: {100 * a:.2f}%"
                                 for e, a in run["validation_accuracy"].items())
                print(f"{prefix}: test accuracy {accs}; validation {vals or '-'}; step "
                      f"{1e3 * run['step_time']['median_s']:.2f} ms; {run['wall_s']:.1f} s"
                      + ("; DIVERGED" if run["diverged"] else ""), flush=True)
            return run

        runs.extend(common.run_jobs(jobs, train, store, progress, prefix))
        done.update(jobs)

    if grid is None:
        fixed = lambda m, o, v: [_tikhonov_for(config, v)]  # noqa: E731
        execute(_jobs(config, config["seeds"], fixed), "final")
        selected = {}
    elif config["sweep_seeds"] is None:
        execute(_jobs(config, config["seeds"], lambda m, o, v: grid), "sweep")
        selected = select_tikhonov(runs, config)
    else:
        execute(_jobs(config, config["sweep_seeds"], lambda m, o, v: grid,
                      with_baseline=False), "sweep")
        selected = select_tikhonov(runs, config)
        if progress:
            print(f"selected tikhonov (validation, seeds {config['sweep_seeds']}): "
                  f"{selected}", flush=True)
        execute(_jobs(config, config["seeds"], lambda m, o, v: [selected[m][o][v]]),
                "final")
    results = {
        "benchmark": "classification",
        "config": config,
        "data": info,
        "environment": common.environment(),
        "runs": runs,
        "summary": summarize(runs, config, selected),
        "wall_time_s": time.perf_counter() - t0,
    }
    if grid is not None:
        results["selected_tikhonov"] = selected
        results["sweep"] = sweep_summary(runs, config, selected)
    return results


# -- the table -------------------------------------------------------------------------


def format_table(results):
    """Paper-Table-4-style text: test accuracy mean +- std and marks, validation accuracy,
    the sweep (each variant's lambdas, its pick marked *), then step-time ratios."""
    config, summary = results["config"], results["summary"]
    models = config["models"]
    index = {(r["model"], r["optimizer"], r["variant"], r["epoch"]): r for r in summary}
    n = len(config["seeds"])
    info = results.get("data", {})
    grid = tikhonov_grid(config)
    tik_text = ("swept " + ", ".join(f"{v:g}" for v in grid)
                + " (* in the table: each variant's pick on mean validation accuracy at epoch "
                  f"{config['epochs']}"
                + (f", sweep seeds {config['sweep_seeds']})" if config.get("sweep_seeds")
                   else ")")
                if grid is not None else _format_tikhonov(config["tikhonov"]))
    lines = [
        "MNIST classification (Petersen et al. 2024, Table 4): test accuracy [%], "
        f"mean +- std over {n} seed{'s' * (n != 1)}",
        f"data: {info.get('description', config['data'])}, {info.get('n_train', '?')} train /"
        f" {info.get('n_validation', '?')} validation / {info.get('n_test', '?')} test; batch "
        f"{config['batch_size']}, SGD lr {config['lr_sgd']:g}, Adam lr "
        f"{config['lr_adam']:g}, tikhonov {tik_text}",
        "",
    ]
    cell_w = max(18, *(len(m) for m in models))

    def block(title, cell_of):
        nonlocal lines
        head = f"{'optimizer':<10}{'epoch':>6}  {'method':<13}" + "".join(
            f"{m:>{cell_w}}" for m in models)
        lines += [title, head, "-" * len(head)]
        for opt in config["optimizers"]:
            for epoch in config["eval_epochs"]:
                for j, variant in enumerate(config["variants"]):
                    left = (f"{OPTIMIZER_LABELS[opt] if j == 0 else '':<10}"
                            f"{epoch if j == 0 else '':>6}  {VARIANT_LABELS[variant]:<13}")
                    lines.append(left + "".join(
                        f"{cell_of(index[(m, opt, variant, epoch)]):>{cell_w}}"
                        for m in models))
            lines.append("")

    def test_cell(r):
        cell = f"{100 * r['mean']:.2f} +- {100 * r['std']:.2f}"
        lam = f" @{r['tikhonov']:g}" if grid is not None and r.get("tikhonov") is not None \
            else ""
        return cell + " " + common.mark(r).ljust(2) + lam

    if grid is not None:
        cell_w = max(cell_w, 28)
    block("test accuracy [%]" + (" (@ the selected tikhonov)" if grid is not None else ""),
          test_cell)
    lines.append(f"marks vs. baseline (Welch t-test, alpha {ALPHA}): + better mean, "
                 "++ significantly better, -- significantly worse")
    lines.append("")
    if any(r.get("val_mean") is not None for r in summary):
        block("validation accuracy [%]", lambda r: "-" if r.get("val_mean") is None else
              f"{100 * r['val_mean']:.2f} +- {100 * r['val_std']:.2f}   ")
    if results.get("sweep"):
        lines += _format_sweep(results)
    warm = config["warmup_steps"]
    lines.append(f"training step time: median per batch after {warm} warm-up step"
                 f"{'s' * (warm != 1)}, ratio to the baseline in this run "
                 "(baseline: ms per step)")
    head = f"{'optimizer':<10}  {'method':<13}" + "".join(f"{m:>12}" for m in models)
    lines += [head, "-" * len(head)]
    last = config["eval_epochs"][-1]
    for opt in config["optimizers"]:
        for j, variant in enumerate(config["variants"]):
            left = f"{OPTIMIZER_LABELS[opt] if j == 0 else '':<10}  {VARIANT_LABELS[variant]:<13}"
            cells = []
            for model in models:
                r = index[(model, opt, variant, last)]
                if variant == "baseline" or r["step_time_ratio"] is None:
                    cells.append(f"{1e3 * r['step_time_median_s']:.2f} ms")
                else:
                    cells.append(f"{r['step_time_ratio']:.2f}x")
            lines.append(left + "".join(f"{c:>12}" for c in cells))
    diverged = [r for r in results.get("runs", []) if r.get("diverged")]
    if diverged:
        lines.append("")
        lines.append("diverged (non-finite base loss): " + ", ".join(
            f"{r['model']}/{r['optimizer']}/{r['variant']}"
            + (f"/λ={r['tikhonov']:g}" if r.get("tikhonov") is not None else "")
            + f"/seed {r['seed']}" for r in diverged))
    if "wall_time_s" in results:
        lines.append("")
        lines.append(f"total wall time {results['wall_time_s']:.1f} s")
    return "\n".join(lines)


def _format_sweep(results):
    """The sweep block: validation and test accuracy per lambda, * at each pick."""
    config = results["config"]
    seeds = config.get("sweep_seeds") or config["seeds"]
    lines = [f"tikhonov sweep at epoch {config['epochs']}, seeds {seeds}: accuracy [%] mean "
             "+- std; * = the variant's pick (best mean validation accuracy)"]
    head = (f"{'model':<6}{'optimizer':<10}  {'method':<13}{'tikhonov':>10}"
            f"{'validation':>18}{'test':>18}")
    lines += [head, "-" * len(head)]

    def ms(mean, std):
        return "-" if mean is None else f"{100 * mean:.2f} +- {100 * std:.2f}"

    for r in results["sweep"]:
        lam = "-" if r["tikhonov"] is None else f"{r['tikhonov']:g}" + \
            ("*" if r["selected"] else " ")
        lines.append(f"{r['model']:<6}{OPTIMIZER_LABELS[r['optimizer']]:<10}  "
                     f"{VARIANT_LABELS[r['variant']]:<13}{lam:>10}"
                     f"{ms(r['val_mean'], r['val_std']):>18}"
                     f"{ms(r['test_mean'], r['test_std']):>18}"
                     + (f"  ({r['diverged']} diverged)" if r["diverged"] else ""))
    lines.append("")
    return lines


def _format_tikhonov(tik):
    if isinstance(tik, dict):
        return ", ".join(f"{k}={v:g}" for k, v in tik.items())
    return f"{tik:g}"


def write_results(results, out_dir):
    """Writes ``results.json`` and ``table.txt`` into ``out_dir``; returns their paths."""
    json_path = common.write_json(results, out_dir)
    table_path = os.path.join(out_dir, "table.txt")
    with open(table_path, "w") as f:
        f.write(format_table(results) + "\n")
    return json_path, table_path


# -- command line ----------------------------------------------------------------------


_EXAMPLES = {"--models": "M1,M5", "--optimizers": "sgd,adam",
             "--variants": "baseline,hessian"}


def _split(values, option):
    """``["M1,M5", "M3"]`` -> ``["M1", "M5", "M3"]``; an empty item (``"M1,,M5"``,
    ``","``) is a ValueError naming ``option``."""
    out = []
    for item in values:
        parts = [v.strip() for v in item.split(",")]
        if any(not v for v in parts):
            raise ValueError(f"{option} has an empty item in {item!r}; give names such as "
                             f"{_EXAMPLES[option]}.")
        out += parts
    return out


def _float(text, what):
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what} takes numbers, e.g. 1e-3,0.1,10; received "
                         f"{text.strip()!r}.") from None


def _parse_tikhonov(text):
    """``"1.0"`` -> 1.0; ``"1e-3,0.1,10"`` -> a sweep (list); ``"hessian=1,fisher=0.1"`` ->
    dict (other variants: DEFAULTS). Empty items make a ValueError naming tikhonov."""
    items = text.split(",")
    if any(not item.strip() for item in items):
        raise ValueError(f"--tikhonov has an empty value: {text!r}; give numbers >= 0, "
                         f"e.g. 1e-3,0.1,10.")
    if "=" not in text:
        values = [_float(item, "--tikhonov") for item in items]
        return values[0] if len(values) == 1 else values
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key.strip().lower()] = _float(value, "--tikhonov")
    for v in VARIANTS[1:]:
        out.setdefault(v, DEFAULTS["tikhonov"])
    return out


def register(subparsers):
    """Adds ``classification`` to ``keras-newton bench``."""
    p = subparsers.add_parser(
        "classification",
        help="MNIST classification, baseline vs. Newton losses (paper Table 4)",
        description="MNIST classification (Petersen et al. 2024, Table 4): softmax "
                    "cross-entropy trained directly and through its Newton losses, with SGD "
                    "and Adam, over seeds; prints test accuracy mean +- std, Welch t-tests "
                    "against the baseline and step-time ratios. Defaults: a CPU-sized run "
                    "on the bundled MNIST subset; see --paper and --quick.",
    )
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--paper", action="store_true",
                        help="paper setting: full MNIST, M1-M5, 20 seeds, epochs 1 and 200 "
                             "(a GPU job)")
    preset.add_argument("--quick", action="store_true",
                        help="seconds-long smoke run (M1, SGD, 2 seeds, 1000 digits)")
    p.add_argument("--models", nargs="+", action="extend", metavar="M",
                   help="models among M1..M5, e.g. M1,M5 (default M1 M5)")
    p.add_argument("--optimizers", nargs="+", action="extend", metavar="OPT",
                   help="sgd and/or adam")
    p.add_argument("--variants", nargs="+", action="extend", metavar="V",
                   help=f"among {', '.join(VARIANTS)} (default: all)")
    p.add_argument("--seeds", type=common.parse_seeds,
                   help="comma list of distinct seeds, e.g. 0,1,2 (default 0,1,2)")
    p.add_argument("--epochs", type=int, help="training epochs (default 2); test accuracy "
                                              "is taken after epoch 1 and the last")
    p.add_argument("--batch-size", type=int, help="batch size (default 100)")
    p.add_argument("--lr-sgd", type=float, help="SGD learning rate (default 0.1)")
    p.add_argument("--lr-adam", type=float, help="Adam learning rate (default 1e-3)")
    p.add_argument("--tikhonov", type=str,
                   help="lambda for all Newton variants, or per variant as "
                        "hessian=1,fisher=0.1 (default 1.0); a comma list such as "
                        "1e-3,1e-2,0.1,1,10,100,1000 sweeps it: every Newton variant at "
                        "every value, each variant's lambda picked per model and optimizer "
                        "on mean validation accuracy at the last epoch")
    p.add_argument("--sweep-seeds", type=common.parse_seeds, metavar="S",
                   help="with a --tikhonov sweep: sweep on these seeds only (a comma list, "
                        "e.g. 0 or 0,1; among --seeds), then run every seed of --seeds at the "
                        "picked values (default: sweep on every seed)")
    p.add_argument("--validation", type=int,
                   help="hold out the last N training digits for validation (default: a "
                        "twelfth, 5000 of full MNIST's 60000); 0: none (no sweep then)")
    p.add_argument("--data", type=str,
                   help="load_mnist source: auto, keras_cache, download, bundled or a path "
                        "(default bundled; --paper: auto, requiring full MNIST)")
    p.add_argument("--max-train", type=int, help="use the first N training digits")
    p.add_argument("--max-test", type=int, help="use the first N test digits")
    p.add_argument("--warmup-steps", type=int,
                   help="untimed steps at the start of each run (default 5)")
    common.add_run_options(p, os.path.join("results", "classification"))
    p.set_defaults(func=run)
    return p


def config_from_args(args):
    """The config that the parsed command-line ``args`` ask for."""
    preset = "paper" if args.paper else "quick" if args.quick else "cpu"
    overrides = {
        "models": _split(args.models, "--models") if args.models else None,
        "optimizers": _split(args.optimizers, "--optimizers") if args.optimizers else None,
        "variants": _split(args.variants, "--variants") if args.variants else None,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr_sgd": args.lr_sgd,
        "lr_adam": args.lr_adam,
        "tikhonov": (_parse_tikhonov(args.tikhonov) if args.tikhonov is not None
                     else None),
        "sweep_seeds": args.sweep_seeds,
        "validation": args.validation,
        "data": args.data,
        "max_train": args.max_train,
        "max_test": args.max_test,
        "warmup_steps": args.warmup_steps,
    }
    if args.paper and args.data not in (None, "auto"):
        overrides["require_full_mnist"] = False  # an explicit source is the user's call
    return make_config(preset, **overrides)


def count_runs(config):
    """How many training runs `run_benchmark` makes for ``config``."""
    grid = tikhonov_grid(config)
    cells = len(config["models"]) * len(config["optimizers"])
    n_base = int("baseline" in config["variants"])
    n_newton = len(config["variants"]) - n_base
    seeds, sweep = len(config["seeds"]), config["sweep_seeds"]
    if grid is None:
        return cells * seeds * (n_base + n_newton)
    if sweep is None:
        return cells * seeds * (n_base + n_newton * len(grid))
    # Stage 2 reuses the sweep seeds' runs at the picked lambda.
    return cells * (len(sweep) * n_newton * len(grid)
                    + seeds * n_base + (seeds - len(sweep)) * n_newton)


def _load(config):
    """The data of ``config`` (`load_data`); a bad ``validation`` fails here, not mid-run."""
    data = load_data(config, verbose=True)
    split_validation(data[0], config)
    return data


def run(args):
    """Entry point of ``keras-newton bench classification``."""

    def make():
        config = config_from_args(args)
        grid = tikhonov_grid(config)
        sweep = (f"; tikhonov sweep {', '.join(f'{v:g}' for v in grid)} on seeds "
                 f"{config['sweep_seeds'] or config['seeds']}" if grid else "")
        print(f"bench classification ({config['preset']} preset): {count_runs(config)} "
              f"runs: models {', '.join(config['models'])}; optimizers "
              f"{', '.join(config['optimizers'])}; variants "
              f"{', '.join(config['variants'])}; seeds {config['seeds']}; epochs "
              f"{config['epochs']}{sweep}", flush=True)
        return config

    return common.run_bench(
        args, "classification", make, _load,
        lambda config, data, store: run_benchmark(config, progress=True, data=data,
                                                  store=store),
        format_table)

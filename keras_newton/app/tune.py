"""``keras-newton tune``: KerasTuner searches over the benchmarks' Newton-loss settings.

    keras-newton tune ranking --tuner random --max-trials 20
    keras-newton tune shortest-path --method fenchel_young --tuner bayesian
    keras-newton tune classification --model M1 --tuner hyperband --epochs 4

Each command builds the benchmark's hypermodel (`keras_newton.models.hypermodels`: the
curvature kind or the baseline, ``tikhonov`` on a log scale in ``1e-3 .. 1e3``, the
relaxation's temperature or steepness and the learning rate), loads the benchmark's data as
``keras-newton bench`` does, and searches with KerasTuner's RandomSearch, BayesianOptimization
or Hyperband, maximising a validation metric (ranking: exact match; shortest paths: perfect
match; classification: accuracy). It then prints the best trials, evaluates the best model
on the test split, and writes under ``--out``: KerasTuner's project folder (``search/``),
``best_model.keras`` (loads with `keras.saving.load_model`) and ``summary.json`` (every
trial's hyperparameters and score, the best model's test metrics, the settings).

Ranges are given as ``LOW,HIGH`` (log scale) or one number (fixed): ``--tikhonov 1e-2,1e2``,
``--learning-rate 1e-3``. ``tikhonov`` is searched in the batch-mean convention by default
(``--tikhonov-convention batch_mean``): the paper's range ``1e-3 .. 1e3`` as the lambda of a
batch-mean loss, converted to `keras_newton.NewtonLoss`'s per-sample lambda by
`keras_newton.tikhonov.to_per_sample` (times the batch size for the Hessians, its square for
the Fisher); ``per_sample`` passes the values as they are. ``--quick`` is a seconds-long smoke run on tiny data.
Needs ``pip install 'keras-newton[tune]'`` (keras-tuner, and tensorboard, which KerasTuner
imports on TensorFlow).
"""

import math
import os
import time
import warnings

import numpy as np

from keras_newton.app import common

TUNERS = ("random", "bayesian", "hyperband")

SEARCH_DEFAULTS = dict(tuner="random", max_trials=10, epochs=3, seed=0, resume=False,
                       hyperband_factor=3, top=5, tikhonov_convention="batch_mean")
BENCH_DEFAULTS = {
    "ranking": dict(n=5, relaxation="neuralsort", batch_size=20, steps_per_epoch=200,
                    validation_sets=500, test_sets=1000, data="auto"),
    "classification": dict(model="M1", optimizer="sgd", batch_size=100, data="bundled",
                           validation=1000, max_train=None, max_test=None),
    "shortest-path": dict(method="fenchel_young", samples=10, batch_size=70,
                          n_train=1500, n_val=200, n_test=500, data=None,
                          data_cache="results/warcraft_data"),
}
QUICK = {
    "ranking": dict(n=3, batch_size=4, steps_per_epoch=2, validation_sets=8, test_sets=8,
                    data="bundled", max_trials=2, epochs=2),
    "classification": dict(max_train=600, validation=200, max_test=200, max_trials=2,
                           epochs=1),
    "shortest-path": dict(samples=3, batch_size=8, n_train=24, n_val=8, n_test=8,
                          max_trials=2, epochs=2),
}
# Hypermodel arguments settable from the command line, per benchmark.
HYPER_KEYS = {
    "ranking": ("n", "relaxation", "curvatures", "tikhonov", "learning_rate", "tau",
                "steepness"),
    "classification": ("model", "optimizer", "curvatures", "tikhonov", "learning_rate"),
    "shortest-path": ("method", "samples", "curvatures", "tikhonov", "learning_rate", "beta",
                      "sigma"),
}
HYPERMODELS = {"ranking": "RankingHyperModel", "classification": "ClassificationHyperModel",
               "shortest-path": "ShortestPathHyperModel"}


def import_keras_tuner():
    """``keras_tuner``, or an ImportError saying which extra installs it."""
    try:
        import keras_tuner
    except ImportError as error:
        raise ImportError("keras-newton tune needs KerasTuner: pip install "
                          "'keras-newton[tune]' (keras-tuner and tensorboard).") from error
    return keras_tuner


def make_config(benchmark, quick=False, **overrides):
    """The search settings of ``benchmark``: defaults, then ``--quick``, then overrides.

    Args:
        benchmark: ``"ranking"``, ``"classification"`` or ``"shortest-path"``.
        quick: seconds-long settings on tiny data.
        **overrides: search keys (`SEARCH_DEFAULTS`), data keys (`BENCH_DEFAULTS`) and the
            benchmark's hypermodel arguments (`HYPER_KEYS`); ``None`` values are ignored.

    Returns:
        A dict with the benchmark name, ``"quick"`` and every setting.
    """
    if benchmark not in BENCH_DEFAULTS:
        raise ValueError(f"benchmark must be one of {sorted(BENCH_DEFAULTS)}; received "
                         f"{benchmark!r}.")
    config = dict(SEARCH_DEFAULTS, **BENCH_DEFAULTS[benchmark])
    if quick:
        config.update(QUICK[benchmark])
    allowed = set(config) | set(HYPER_KEYS[benchmark])
    unknown = sorted(set(k for k, v in overrides.items() if v is not None) - allowed)
    if unknown:
        raise ValueError(f"Unknown settings {unknown} for tune {benchmark}; expected some "
                         f"of {sorted(allowed)}.")
    config.update({k: v for k, v in overrides.items() if v is not None})
    config.update(benchmark=benchmark, quick=bool(quick))
    if config["tuner"] not in TUNERS:
        raise ValueError(f"tuner must be one of {TUNERS}; received {config['tuner']!r}.")
    # The counts of every benchmark's data (validation/test sets, maps, images) are checked
    # here too, so that 0 is refused rather than read as "the default" further down.
    minimum = {"max_trials": 1, "epochs": 1, "batch_size": 1, "top": 1, "seed": 0,
               "hyperband_factor": 2, "steps_per_epoch": 1, "validation_sets": 1,
               "test_sets": 1, "validation": 1, "samples": 1, "n_train": 1, "n_val": 1,
               "n_test": 1}
    for key, low in minimum.items():
        if key not in config:  # not a setting of this benchmark
            continue
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            expected = {0: "a non-negative integer", 1: "a positive integer"}.get(
                low, f"an integer >= {low}")
            raise ValueError(f"{key} must be {expected}; received {value!r}.")
    return config


def make_hypermodel(config):
    """The benchmark's hypermodel with the config's hypermodel arguments."""
    from keras_newton import models

    cls = getattr(models, HYPERMODELS[config["benchmark"]])
    kwargs = {k: config[k] for k in HYPER_KEYS[config["benchmark"]] if k in config}
    return cls(**kwargs, tikhonov_convention=config["tikhonov_convention"],
               batch_size=config["batch_size"])


def make_tuner(config, hypermodel, directory, project_name="search"):
    """A KerasTuner tuner of kind ``config["tuner"]`` maximising the hypermodel's objective.

    Hyperband has no trial budget: it plays brackets up to ``config["epochs"]`` epochs with
    ``hyperband_factor``.
    """
    kt = import_keras_tuner()
    shared = dict(objective=hypermodel.objective, seed=config["seed"], directory=directory,
                  project_name=project_name, overwrite=not config["resume"])
    if config["tuner"] == "random":
        return kt.RandomSearch(hypermodel, max_trials=config["max_trials"], **shared)
    if config["tuner"] == "bayesian":
        return kt.BayesianOptimization(hypermodel, max_trials=config["max_trials"],
                                       num_initial_points=min(3, config["max_trials"]),
                                       **shared)
    return kt.Hyperband(hypermodel, max_epochs=config["epochs"],
                        factor=config["hyperband_factor"], **shared)


# -- data: as `keras-newton bench` loads it -------------------------------------------


def _ranking_data(config, verbose):
    from keras_newton.app import ranking
    from keras_newton.datasets import four_digit_datasets

    mnist, info = ranking.load_data(dict(data=config["data"], require_full_mnist=False),
                                    verbose=verbose)
    train, val, test = four_digit_datasets(
        mnist, config["n"], batch_size=config["batch_size"],
        num_validation_sets=config["validation_sets"], num_test_sets=config["test_sets"],
        seed=config["seed"])
    fit_args = (train,)
    # The training stream is fresh random sets at every step: Keras must not shuffle it.
    fit_kwargs = dict(steps_per_epoch=config["steps_per_epoch"], validation_data=val,
                      shuffle=False)

    def evaluate(model):
        result = model.evaluate(test, verbose=0, return_dict=True)
        return {"exact_match": float(result["exact_match"]),
                "elementwise_accuracy": float(result["elementwise_accuracy"])}

    return fit_args, fit_kwargs, evaluate, info


def _classification_data(config, verbose):
    from keras_newton.app import classification

    bench = classification.make_config("cpu", data=config["data"],
                                       max_train=config["max_train"],
                                       max_test=config["max_test"])
    ((x, y), (xt, yt)), info = classification.load_data(bench, verbose=verbose)
    n_val = config["validation"]
    if not 0 < n_val < len(x):
        raise ValueError(f"validation must be between 1 and the {len(x) - 1} training "
                         f"images; received {n_val!r}.")
    # The last training rows validate (the bundled subset is already shuffled).
    fit_args = (x[:-n_val], y[:-n_val])
    fit_kwargs = dict(batch_size=config["batch_size"], validation_data=(x[-n_val:],
                                                                         y[-n_val:]))

    def evaluate(model):
        return {"accuracy": classification.test_accuracy(model, xt, yt)}

    return fit_args, fit_kwargs, evaluate, dict(info, n_validation=n_val)


def _shortest_path_data(config, verbose):
    from keras_newton.app import shortest_path
    from keras_newton.datasets.warcraft import normalise_warcraft
    from keras_newton.metrics.paths import path_metrics
    from keras_newton.paths.targets import pack_path_targets

    bench = shortest_path.make_config(
        "cpu", method=config["method"], data=config["data"],
        data_cache=config["data_cache"], n_train=config["n_train"], n_val=config["n_val"],
        n_test=config["n_test"])
    arrays, info = shortest_path.load_data(bench, verbose=verbose)
    data = normalise_warcraft(arrays)
    x, _, paths = data["train"]
    x_val, costs_val, paths_val = data["val"]
    x_test, costs_test, paths_test = data["test"]
    fit_args = (x, paths)
    fit_kwargs = dict(batch_size=config["batch_size"], shuffle=True,
                      validation_data=(x_val, pack_path_targets(paths_val, costs_val)))

    def evaluate(model):
        return path_metrics(model.predict(x_test, batch_size=200, verbose=0), costs_test,
                            paths_test)

    return fit_args, fit_kwargs, evaluate, info


DATA = {"ranking": _ranking_data, "classification": _classification_data,
        "shortest-path": _shortest_path_data}


# -- the search -----------------------------------------------------------------------


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def trial_records(tuner):
    """Every trial of ``tuner``: id, status, score, best step and hyperparameters, best first.

    Trials without a score (failed, or still running) come last.
    """
    records = []
    for trial in tuner.oracle.trials.values():
        score = trial.score
        records.append({
            "trial_id": trial.trial_id,
            "status": str(trial.status),
            "score": _jsonable(score),
            "best_step": _jsonable(trial.best_step),
            "hyperparameters": {k: _jsonable(v)
                                for k, v in trial.hyperparameters.values.items()},
        })
    direction = tuner.oracle.objective.direction
    sign = -1.0 if direction == "max" else 1.0

    def key(r):
        s = r["score"]
        return (s is None, 0.0 if s is None else sign * s)

    return sorted(records, key=key)


def run_search(config, out, progress=True):
    """Runs the search of ``config``; returns the summary dict (also written to ``out``).

    Args:
        config: from `make_config`.
        out: output folder: KerasTuner's ``search/`` project, ``best_model.keras``,
            ``summary.json``.
        progress: let KerasTuner print its trials (one line per epoch).
    """
    import keras

    t0 = time.perf_counter()
    keras.utils.set_random_seed(config["seed"])
    try:
        fit_args, fit_kwargs, evaluate, info = DATA[config["benchmark"]](config, progress)
    except (ValueError, FileNotFoundError) as e:  # bad data settings or a missing source
        raise common.UsageError(str(e)) from None
    hypermodel = make_hypermodel(config)
    os.makedirs(out, exist_ok=True)
    tuner = make_tuner(config, hypermodel, directory=os.path.abspath(out))
    if config["tuner"] != "hyperband":
        fit_kwargs["epochs"] = config["epochs"]
    tuner.search(*fit_args, verbose=2 if progress else 0, **fit_kwargs)
    trials = trial_records(tuner)
    scored = [t for t in trials if t["score"] is not None]
    if not scored:
        raise RuntimeError(f"No trial of the search finished with a score; see the logs "
                           f"under {out}.")
    with warnings.catch_warnings():
        # KerasTuner's checkpoints hold no optimizer state; Keras says so on loading them.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        best_model = tuner.get_best_models(1)[0]
    # Checkpoints hold weights only: build the optimizer's slots so that the file saves
    # and loads them consistently (zeros; the model is for inference or fine-tuning).
    best_model.optimizer.build(best_model.trainable_variables)
    model_path = os.path.join(out, "best_model.keras")
    best_model.save(model_path)
    summary = {
        "benchmark": config["benchmark"], "tuner": config["tuner"],
        "objective": {"name": hypermodel.objective.name,
                      "direction": hypermodel.objective.direction},
        "config": config, "hypermodel": hypermodel.get_config(), "data": info,
        "trials": trials,
        "best": dict(scored[0], model_path=model_path, test=evaluate(best_model)),
        "environment": common.environment(), "wall_time_s": time.perf_counter() - t0,
    }
    summary["path"] = common.write_json(summary, out, "summary.json")
    return summary


def format_trials(summary, top=5):
    """The ``top`` best trials as a text table, then the best model's test metrics."""
    objective = summary["objective"]["name"]
    trials = summary["trials"][:top]
    names = sorted({k for t in trials for k in t["hyperparameters"]},
                   key=lambda k: (k != "curvature", k))
    title = (f"tune {summary['benchmark']} ({summary['tuner']}): best {len(trials)} of "
             f"{len(summary['trials'])} trials by {objective}")
    lines = [title, "-" * len(title),
             f"{'trial':<6} {objective:>18} " + " ".join(f"{n:>20}" for n in names)]
    for t in trials:
        score = "-" if t["score"] is None else f"{t['score']:.4f}"
        values = []
        for n in names:
            v = t["hyperparameters"].get(n)
            text = "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
            values.append(f"{text:>20}")
        lines.append(f"{t['trial_id']:<6} {score:>18} " + " ".join(values))
    test = ", ".join(f"{k} {v:.4g}" for k, v in summary["best"]["test"].items())
    lines.append(f"best model (trial {summary['best']['trial_id']}) on the test split: {test}")
    return "\n".join(lines)


# -- command line ----------------------------------------------------------------------


def parse_range(text):
    """``"LOW,HIGH"`` -> ``(low, high)``; ``"VALUE"`` -> ``value`` (fixed)."""
    values = common.parse_list(text, float)
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return tuple(values)
    raise ValueError(f"expected VALUE or LOW,HIGH; received {text!r}.")


def _add_search_options(p):
    p.add_argument("--tuner", choices=TUNERS, help="search algorithm (default random)")
    p.add_argument("--max-trials", type=int, help="trials of random / bayesian search")
    p.add_argument("--epochs", type=int, help="epochs per trial (Hyperband: the maximum)")
    p.add_argument("--hyperband-factor", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--curvatures", type=common.parse_list,
                   help="choices of the curvature, e.g. baseline,hessian,fisher")
    p.add_argument("--tikhonov", type=parse_range, help="LOW,HIGH (log) or a fixed value")
    p.add_argument("--tikhonov-convention", choices=("batch_mean", "per_sample"),
                   help="scale of --tikhonov: batch_mean (default: the lambda of a "
                   "batch-mean loss, as the paper's 1e-3..1e3 grid may be meant; converted "
                   "to keras-newton's per-sample lambda, x batch size for the Hessians, "
                   "x batch size^2 for the Fisher) or per_sample (passed as it is)")
    p.add_argument("--learning-rate", type=parse_range, help="LOW,HIGH (log) or a value")
    p.add_argument("--top", type=int, help="trials to print (default 5)")
    p.add_argument("--resume", action="store_true", default=None,
                   help="continue the search found in --out instead of starting anew")
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run")


def register(subparsers):
    p = subparsers.add_parser("ranking", help="tune four-digit MNIST ranking (Table 1)",
                              description=__doc__.split("\n\n")[0])
    _add_search_options(p)
    p.add_argument("--n", type=int, help="items per set (default 5)")
    p.add_argument("--relaxation", help="neuralsort (default), softsort or diffsort")
    p.add_argument("--tau", type=parse_range, help="NeuralSort/SoftSort temperature range")
    p.add_argument("--steepness", type=parse_range, help="DiffSort steepness range")
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--validation-sets", type=int)
    p.add_argument("--test-sets", type=int)
    p.add_argument("--data", help="MNIST source: auto, bundled, keras_cache, download, PATH")
    p.add_argument("--out", default="results/tune/ranking")
    p.set_defaults(func=run, benchmark="ranking")

    p = subparsers.add_parser("shortest-path", help="tune Warcraft shortest paths "
                              "(Tables 2-3)", description=__doc__.split("\n\n")[0])
    _add_search_options(p)
    p.add_argument("--method", help="bf_for_l1, bf_for_l2, bf_while_l1, bf_while_l2, "
                   "smooth_loss, smooth_algorithm or fenchel_young (default)")
    p.add_argument("--samples", type=int, help="samples of the sampled methods")
    p.add_argument("--beta", type=parse_range, help="relaxed Bellman-Ford beta range")
    p.add_argument("--sigma", type=parse_range, help="noise scale range (sampled methods)")
    p.add_argument("--data", help="folder with the original Warcraft .npy layout")
    p.add_argument("--data-cache", help="where the generated look-alike is kept")
    p.add_argument("--n-train", type=int)
    p.add_argument("--n-val", type=int)
    p.add_argument("--n-test", type=int)
    p.add_argument("--out", default="results/tune/shortest_path")
    p.set_defaults(func=run, benchmark="shortest-path")

    p = subparsers.add_parser("classification", help="tune MNIST classification (Table 4)",
                              description=__doc__.split("\n\n")[0])
    _add_search_options(p)
    p.add_argument("--model", choices=("M1", "M2", "M3", "M4", "M5"))
    p.add_argument("--optimizer", choices=("sgd", "adam"))
    p.add_argument("--validation", type=int, help="training images held out to validate")
    p.add_argument("--max-train", type=int)
    p.add_argument("--max-test", type=int)
    p.add_argument("--data", help="MNIST source: auto, bundled, keras_cache, download, PATH")
    p.add_argument("--out", default="results/tune/classification")
    p.set_defaults(func=run, benchmark="classification")


def run(args):
    skip = {"func", "benchmark", "quick", "out", "command", "name", "argv"}
    overrides = {k: v for k, v in vars(args).items() if k not in skip}
    try:
        config = make_config(args.benchmark, quick=args.quick, **overrides)
        import_keras_tuner()
        make_hypermodel(config)  # bad ranges fail here, before any data is read
    except (ValueError, ImportError) as e:
        raise common.UsageError(str(e)) from None
    common.check_out_dir(args.out)
    summary = run_search(config, args.out)
    print()
    print(format_trials(summary, config["top"]))
    print(f"\nbest model: {summary['best']['model_path']}; summary: {summary['path']}")
    return 0

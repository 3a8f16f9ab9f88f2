"""``keras-newton bench classification``: MNIST classification, paper Table 4.

Petersen et al. (NeurIPS 2024), Section 5.3: softmax cross-entropy on MNIST, trained
directly (baseline) and through its Newton losses (element-wise Hessian, empirical Hessian,
empirical Fisher; Definitions 1-3), with SGD and Adam, over several seeds and the models
M1-M5 (`keras_newton.models.classification`). Softmax cross-entropy is well behaved, so the
paper expects no gain; it reports Newton (Hessian) indistinguishable from the baseline and
Newton (Fisher) better with SGD.

Printed: test accuracy mean +- std (sample std, ddof=1) over seeds for every model x
optimizer x variant at epoch 1 and at the final epoch, a Welch t-test of each Newton variant
against the baseline (``scipy.stats.ttest_ind(equal_var=False)``, alpha 0.05), and each
variant's training step time as a ratio to the baseline's, measured in the same run (median
per-batch time after warm-up steps). Written: ``results.json`` (config, data source,
environment, every per-seed number, the summary) and ``table.txt`` under ``--out``.

Every run of a given seed starts from the same initial weights and the same data order, so
the variants are compared on paired starts.

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
import sys
import time

import numpy as np

from keras_newton.bench import common
from keras_newton.bench.common import welch_test  # noqa: F401  (re-exported)

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
    "tikhonov": 1.0,
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
    if isinstance(tik, dict):
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
                          else float(tik))
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
              prefix=""):
    """Trains one model; returns the run's record (accuracies, history, step times).

    The seed fixes the initial weights and the shuffling, identically for every variant.
    """
    import keras

    from keras_newton import NewtonLoss
    from keras_newton.metrics import BaseLoss
    from keras_newton.models.classification import classification_model

    (x, y), (xt, yt) = data
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = classification_model(model_name)
    base = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if variant == "baseline":
        loss = base
    else:
        loss = NewtonLoss(base, curvature=variant, tikhonov=_tikhonov_for(config, variant))
    lr = config["lr_sgd"] if optimizer == "sgd" else config["lr_adam"]
    opt = keras.optimizers.SGD(lr) if optimizer == "sgd" else keras.optimizers.Adam(lr)
    # The same metrics for every variant, so the step times compare like with like.
    model.compile(opt, loss, metrics=[BaseLoss(base),
                                      keras.metrics.SparseCategoricalAccuracy("accuracy")])
    timer = common.step_timer()
    printer = _progress_printer(keras, progress, config["epochs"], prefix)
    history = {"base_loss": [], "accuracy": []}
    accuracies = {}
    done = 0
    t0 = time.perf_counter()
    for target in config["eval_epochs"]:
        h = model.fit(x, y, batch_size=config["batch_size"], epochs=target,
                      initial_epoch=done, shuffle=True, verbose=0,
                      callbacks=[timer, printer])
        for key in history:
            history[key].extend(float(v) for v in h.history.get(key, []))
        accuracies[str(target)] = test_accuracy(model, xt, yt)
        done = target
    wall = time.perf_counter() - t0
    return {
        "model": model_name,
        "optimizer": optimizer,
        "variant": variant,
        "seed": seed,
        "tikhonov": None if variant == "baseline" else _tikhonov_for(config, variant),
        "learning_rate": lr,
        "test_accuracy": accuracies,
        "history": history,
        "diverged": not all(math.isfinite(v) for v in history["base_loss"]),
        "step_time": common.step_time_stats(timer.times, config["warmup_steps"]),
        "wall_s": wall,
        "num_params": int(model.count_params()),
    }


# -- statistics ------------------------------------------------------------------------


def summarize(runs, config):
    """One summary row per model x optimizer x variant x evaluated epoch.

    Each row: the per-seed accuracies (ordered as ``config["seeds"]``), their mean and
    sample std, the Welch test against the baseline's row and its verdict, and the
    step-time median (median over seeds of per-run medians) and ratio to the baseline.
    """
    by_key = {(r["model"], r["optimizer"], r["variant"], r["seed"]): r for r in runs}
    rows = []
    for model in config["models"]:
        for opt in config["optimizers"]:
            step = {}
            for variant in config["variants"]:
                medians = [by_key[(model, opt, variant, s)]["step_time"]["median_s"]
                           for s in config["seeds"]]
                step[variant] = float(statistics.median(medians))
            for epoch in config["eval_epochs"]:
                accs = {v: [by_key[(model, opt, v, s)]["test_accuracy"][str(epoch)]
                            for s in config["seeds"]] for v in config["variants"]}
                for variant in config["variants"]:
                    baseline = (accs["baseline"] if "baseline" in accs
                                and variant != "baseline" else None)
                    row = {"model": model, "optimizer": opt, "variant": variant,
                           "epoch": epoch, "accuracies": accs[variant]}
                    row.update(common.compare(accs[variant], baseline))
                    row.update(step_time_median_s=step[variant], step_time_ratio=None)
                    if "baseline" in step:
                        row["step_time_ratio"] = step[variant] / step["baseline"]
                    rows.append(row)
    return rows


# -- the benchmark ---------------------------------------------------------------------


def run_benchmark(config, progress=True, data=None):
    """Trains every model x optimizer x variant x seed of ``config``; returns the results.

    Args:
        config: a dict from `make_config` (validated again here).
        progress: print one line per run and epoch progress.
        data: optional preloaded ``(data, source_info)`` as `load_data` returns.

    Returns:
        ``{"config", "data", "environment", "runs", "summary", "wall_time_s"}``, all
        JSON-serialisable; ``runs`` holds every per-seed record, ``summary`` `summarize`'s
        rows.
    """
    config = validate_config(config)
    t0 = time.perf_counter()
    if data is None:
        data, info = load_data(config, verbose=progress)
    else:
        data, info = data
    runs = []
    jobs = [(m, o, v, s) for m in config["models"] for o in config["optimizers"]
            for s in config["seeds"] for v in config["variants"]]
    for i, (model, opt, variant, seed) in enumerate(jobs, 1):
        prefix = f"[{i}/{len(jobs)}] {model} {OPTIMIZER_LABELS[opt]} {variant} seed {seed}"
        run = train_one(data, model, opt, variant, seed, config, progress, prefix)
        runs.append(run)
        if progress:
            accs = ", ".join(f"epoch {e}: {100 * a:.2f}%"
                             for e, a in run["test_accuracy"].items())
            print(f"{prefix}: test accuracy {accs}; step "
                  f"{1e3 * run['step_time']['median_s']:.2f} ms; {run['wall_s']:.1f} s"
                  + ("; DIVERGED" if run["diverged"] else ""), flush=True)
    return {
        "benchmark": "classification",
        "config": config,
        "data": info,
        "environment": common.environment(),
        "runs": runs,
        "summary": summarize(runs, config),
        "wall_time_s": time.perf_counter() - t0,
    }


# -- the table -------------------------------------------------------------------------


def format_table(results):
    """Paper-Table-4-style text: accuracy mean +- std and marks, then step-time ratios."""
    config, summary = results["config"], results["summary"]
    models = config["models"]
    index = {(r["model"], r["optimizer"], r["variant"], r["epoch"]): r for r in summary}
    n = len(config["seeds"])
    info = results.get("data", {})
    lines = [
        "MNIST classification (Petersen et al. 2024, Table 4): test accuracy [%], "
        f"mean +- std over {n} seed{'s' * (n != 1)}",
        f"data: {info.get('description', config['data'])}, {info.get('n_train', '?')} train /"
        f" {info.get('n_test', '?')} test; batch {config['batch_size']}, SGD lr "
        f"{config['lr_sgd']:g}, Adam lr {config['lr_adam']:g}, tikhonov "
        f"{_format_tikhonov(config['tikhonov'])}",
        "",
    ]
    cell_w = max(18, *(len(m) for m in models))
    head = f"{'optimizer':<10}{'epoch':>6}  {'method':<13}" + "".join(
        f"{m:>{cell_w}}" for m in models)
    lines += [head, "-" * len(head)]
    for opt in config["optimizers"]:
        for epoch in config["eval_epochs"]:
            for j, variant in enumerate(config["variants"]):
                left = (f"{OPTIMIZER_LABELS[opt] if j == 0 else '':<10}"
                        f"{epoch if j == 0 else '':>6}  {VARIANT_LABELS[variant]:<13}")
                cells = []
                for model in models:
                    r = index[(model, opt, variant, epoch)]
                    cell = f"{100 * r['mean']:.2f} +- {100 * r['std']:.2f}"
                    cells.append(f"{cell + ' ' + common.mark(r).ljust(2):>{cell_w}}")
                lines.append(left + "".join(cells))
        lines.append("")
    lines.append(f"marks vs. baseline (Welch t-test, alpha {ALPHA}): + better mean, "
                 "++ significantly better, -- significantly worse")
    lines.append("")
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
                if variant == "baseline":
                    cells.append(f"{1e3 * r['step_time_median_s']:.2f} ms")
                elif r["step_time_ratio"] is None:
                    cells.append(f"{1e3 * r['step_time_median_s']:.2f} ms")
                else:
                    cells.append(f"{r['step_time_ratio']:.2f}x")
            lines.append(left + "".join(f"{c:>12}" for c in cells))
    diverged = [r for r in results.get("runs", []) if r.get("diverged")]
    if diverged:
        lines.append("")
        lines.append("diverged (non-finite base loss): " + ", ".join(
            f"{r['model']}/{r['optimizer']}/{r['variant']}/seed {r['seed']}"
            for r in diverged))
    if "wall_time_s" in results:
        lines.append("")
        lines.append(f"total wall time {results['wall_time_s']:.1f} s")
    return "\n".join(lines)


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


def _split(values):
    """``["M1,M5", "M3"]`` -> ``["M1", "M5", "M3"]``."""
    return [v for item in values for v in item.split(",") if v]


def _parse_seeds(values):
    items = _split(values)
    try:
        ints = [int(v) for v in items]
    except ValueError:
        raise ValueError(f"--seeds takes a count N (seeds 0..N-1) or a list of integers; "
                         f"received {' '.join(values)!r}.") from None
    if len(ints) == 1:
        if ints[0] < 1:
            raise ValueError(f"--seeds N needs N >= 1; received {ints[0]}.")
        return list(range(ints[0]))
    return ints


def _parse_tikhonov(text):
    """``"1.0"`` -> 1.0; ``"hessian=1,fisher=0.1"`` -> dict (other variants: DEFAULTS)."""
    if "=" not in text:
        return float(text)
    out = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        out[key.strip().lower()] = float(value)
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
    p.add_argument("--seeds", nargs="+", action="extend", metavar="S",
                   help="a count N (seeds 0..N-1) or a list of seeds (default 3)")
    p.add_argument("--epochs", type=int, help="training epochs (default 2); test accuracy "
                                              "is taken after epoch 1 and the last")
    p.add_argument("--batch-size", type=int, help="batch size (default 100)")
    p.add_argument("--lr-sgd", type=float, help="SGD learning rate (default 0.1)")
    p.add_argument("--lr-adam", type=float, help="Adam learning rate (default 1e-3)")
    p.add_argument("--tikhonov", type=str,
                   help="lambda for all Newton variants, or per variant as "
                        "hessian=1,fisher=0.1 (default 1.0)")
    p.add_argument("--data", type=str,
                   help="load_mnist source: auto, keras_cache, download, bundled or a path "
                        "(default bundled; --paper: auto, requiring full MNIST)")
    p.add_argument("--max-train", type=int, help="use the first N training digits")
    p.add_argument("--max-test", type=int, help="use the first N test digits")
    p.add_argument("--warmup-steps", type=int,
                   help="untimed steps at the start of each run (default 5)")
    p.add_argument("--out", default=os.path.join("results", "classification"),
                   help="output folder for results.json and table.txt")
    p.set_defaults(func=run)
    return p


def config_from_args(args):
    """The config that the parsed command-line ``args`` ask for."""
    preset = "paper" if args.paper else "quick" if args.quick else "cpu"
    overrides = {
        "models": _split(args.models) if args.models else None,
        "optimizers": _split(args.optimizers) if args.optimizers else None,
        "variants": _split(args.variants) if args.variants else None,
        "seeds": _parse_seeds(args.seeds) if args.seeds else None,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr_sgd": args.lr_sgd,
        "lr_adam": args.lr_adam,
        "tikhonov": _parse_tikhonov(args.tikhonov) if args.tikhonov else None,
        "data": args.data,
        "max_train": args.max_train,
        "max_test": args.max_test,
        "warmup_steps": args.warmup_steps,
    }
    if args.paper and args.data not in (None, "auto"):
        overrides["require_full_mnist"] = False  # an explicit source is the user's call
    return make_config(preset, **overrides)


def run(args):
    """Entry point of ``keras-newton bench classification``."""
    try:
        config = config_from_args(args)
    except ValueError as e:
        print(f"keras-newton bench classification: error: {e}", file=sys.stderr)
        return 2
    n_runs = (len(config["models"]) * len(config["optimizers"]) * len(config["variants"])
              * len(config["seeds"]))
    print(f"bench classification ({config['preset']} preset): {n_runs} runs: models "
          f"{', '.join(config['models'])}; optimizers {', '.join(config['optimizers'])}; "
          f"variants {', '.join(config['variants'])}; seeds {config['seeds']}; epochs "
          f"{config['epochs']}", flush=True)
    try:
        data = load_data(config, verbose=True)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"keras-newton bench classification: error: {e}", file=sys.stderr)
        return 2
    results = run_benchmark(config, progress=True, data=data)
    table = format_table(results)
    print()
    print(table)
    json_path, _ = write_results(results, args.out)
    print(f"\nwrote {json_path} and table.txt", flush=True)
    return 0

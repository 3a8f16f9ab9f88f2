"""``keras-newton bench shortest-path``: Warcraft shortest paths, paper Tables 2 and 3.

Trains `keras_newton.models.comb_resnet18` (map image -> 12x12 costs) supervised only by
the true shortest path, with one of the paper's methods, as the baseline and as Newton
losses, over seeds:

- ``bf_{for,while}_{l1,l2}`` (Table 2): AlgoVision's relaxed Bellman-Ford and an L1 / squared
  L2 path loss; baseline vs. Fisher (``hessian`` too, at autodiff cost).
- ``smooth_loss`` (Table 3): Gaussian smoothing of solver + Hamming loss as one black box;
  baseline, Hessian, Fisher.
- ``smooth_algorithm`` (Table 3): smoothing of the solver only, squared-L2 path loss after
  it; baseline, Fisher.
- ``fenchel_young`` (Table 3): perturbed optimizer with a Fenchel-Young loss; baseline,
  Hessian, Fisher.

Sampled methods run with each of ``--samples`` (3/10/30 in the paper). Validation perfect
match is measured every epoch; test metrics (perfect match %, optimal-cost %, cost ratio)
are taken at the best validation epoch. Prints the table, step-time ratios to the baseline
(same run), and writes ``results.json`` and ``convergence.png`` to ``--out``.

Data: ``--data DIR`` in the original layout (Vlastelica et al.); by default a procedural
look-alike is generated once into ``--data-cache`` (the real maps cannot be shipped).
CPU defaults finish one method's comparison in about 20 minutes on 2 cores; ``--paper``
gives 10k maps, 50 epochs, batch 70, Adam 5e-4 with drops at epochs 30 and 40.
"""

import math
import os
import time

import numpy as np

from keras_newton.app import common


_recipes = common.recipes


# Module attributes read from the library on first use (PEP 562): METHODS, SAMPLED (the
# recipes' methods) and DEFAULT_TIKHONOV, lambda per method (all Newton variants), the
# library's defaults (not tuned yet; see `keras_newton.recipes.SHORTEST_PATH_TIKHONOV`).
# Override with --tikhonov or tune it with `keras-newton tune shortest-path`.
_FROM_RECIPES = {"METHODS": "SHORTEST_PATH_METHODS", "SAMPLED": "SAMPLED_METHODS",
                 "DEFAULT_TIKHONOV": "SHORTEST_PATH_TIKHONOV"}

__getattr__ = common.recipe_attributes(__name__, _FROM_RECIPES)


CPU_DEFAULTS = dict(
    method="fenchel_young", variants=None, samples=[10], seeds=[0, 1], epochs=5,
    batch_size=70, learning_rate=5e-4, lr_drops=(0.6, 0.8), sigma=0.1, beta=10.0,
    tikhonov=None, data=None, data_cache="results/warcraft_data", n_train=1000, n_val=200,
    n_test=500, max_train=None, jit_compile=False, warmup_steps=5,
    absorbing_source=False, hessian_baseline="unperturbed",
)
PAPER = dict(epochs=50, n_train=10000, n_val=1000, n_test=1000, samples=[3, 10, 30],
             seeds=list(range(10)), jit_compile=True)
QUICK = dict(epochs=2, n_train=24, n_val=8, n_test=8, batch_size=8, seeds=[0],
             samples=[3], warmup_steps=1)


def make_config(preset="cpu", **overrides):
    """The benchmark's settings: ``preset`` in ``"cpu"``, ``"paper"``, ``"quick"``."""
    return common.preset_config(CPU_DEFAULTS, {"cpu": {}, "paper": PAPER, "quick": QUICK},
                                preset, overrides, validate_config)


def validate_config(config):
    config = dict(config)
    method = config["method"]
    METHODS, SAMPLED = _recipes().SHORTEST_PATH_METHODS, _recipes().SAMPLED_METHODS
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}; received {method!r}.")
    # Relaxed Bellman-Ford: the paper compares baseline and Fisher (Table 2).
    default = METHODS[method][:2] if method.startswith("bf") else METHODS[method]
    config["variants"] = list(config.get("variants") or default)
    unknown = [v for v in config["variants"] if v not in METHODS[method]]
    if unknown:
        raise ValueError(f"{method} supports the variants {METHODS[method]}; received "
                         f"{unknown}.")
    if method not in SAMPLED:
        config["samples"] = [None]
    elif not config["samples"] or any(isinstance(k, bool) or not isinstance(k, int) or k < 1
                                      for k in config["samples"]):
        raise ValueError(f"samples must be a non-empty list of positive integers; received "
                         f"{config['samples']!r}.")
    tik = config.get("tikhonov")
    if tik is None:
        tik = _recipes().SHORTEST_PATH_TIKHONOV["bf" if method.startswith("bf") else method]
    if not (math.isfinite(float(tik)) and float(tik) >= 0):
        raise ValueError(f"tikhonov must be finite and >= 0; received {tik!r}.")
    config["tikhonov"] = float(tik)
    # Validation and test maps are scored every run: each split needs at least one map.
    for key, low in (("epochs", 1), ("batch_size", 1), ("n_train", 1), ("n_val", 1),
                     ("n_test", 1), ("warmup_steps", 0)):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            expected = "a positive integer" if low else "a non-negative integer"
            raise ValueError(f"{key} must be {expected}; received {value!r}.")
    lr = config["learning_rate"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (
            math.isfinite(lr) and lr > 0):
        raise ValueError(f"learning_rate must be a positive finite number; received {lr!r}.")
    return config


def make_loss(config, variant, samples, seed):
    """The training loss of the variant (`keras_newton.recipes.shortest_path_loss`); the
    base loss is the loss itself for the baseline, else its ``base_loss``."""
    loss, _ = _recipes().shortest_path_loss(
        config["method"], variant, samples=samples, seed=seed, sigma=config["sigma"],
        beta=config["beta"], tikhonov=config["tikhonov"],
        absorbing_source=config.get("absorbing_source", False),
        hessian_baseline=config.get("hessian_baseline", "unperturbed"))
    return loss


def load_data(config, verbose=True):
    """Reads ``config["data"]``, or generates (once) the look-alike into the cache."""
    from keras_newton.datasets.warcraft import generate_warcraft, read_warcraft_arrays

    path = config["data"]
    if path is None:
        sizes = (config["n_train"], config["n_val"], config["n_test"])
        path = os.path.join(config["data_cache"], "look_alike_{}_{}_{}".format(*sizes))
        if not os.path.exists(os.path.join(path, "test_shortest_paths.npy")):
            if verbose:
                print(f"generating the Warcraft look-alike ({sizes[0]}/{sizes[1]}/{sizes[2]} "
                      f"maps) into {path}", flush=True)
            generate_warcraft(path, *sizes, seed=0)
        source = {"kind": "look_alike", "path": path}
    else:
        source = {"kind": "files", "path": path}
    arrays = read_warcraft_arrays(path)
    for split in ("val", "test"):
        if not len(arrays[split]["maps"]):
            raise ValueError(f"warcraft data {path!r} has no {split} maps; the benchmark "
                             f"scores every run on them (give a {split} split of at least "
                             "one map).")
    if config.get("max_train"):
        arrays["train"] = {k: v[: config["max_train"]] for k, v in arrays["train"].items()}
    source.update({s: int(len(arrays[s]["maps"])) for s in arrays})
    if verbose:
        print(f"Warcraft data: {source}", flush=True)
    return arrays, source


def train_one(data, variant, samples, seed, config, progress=True, prefix=""):
    import keras

    from keras_newton.callbacks import PathValidation
    from keras_newton.metrics import BaseLoss
    from keras_newton.metrics.paths import path_metrics
    from keras_newton.models.paths import comb_resnet18

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    x, _, y = data["train"]
    loss = make_loss(config, variant, samples, seed)
    base = loss.base_loss if variant != "baseline" else loss
    steps_per_epoch = math.ceil(len(x) / config["batch_size"])
    boundaries = [int(f * config["epochs"]) * steps_per_epoch for f in config["lr_drops"]]
    lr = config["learning_rate"]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        boundaries, [lr, lr / 10, lr / 100])
    model = comb_resnet18()
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss,
                  metrics=[BaseLoss(base)], jit_compile=config["jit_compile"])
    timer = common.step_timer()
    # Exact-solver validation after every epoch; the best epoch's weights (on validation
    # perfect match) are restored at the end of training (`keras_newton.callbacks`).
    x_val, costs_val, paths_val = data["val"]
    best = PathValidation(x_val, (paths_val, costs_val), batch_size=200,
                          restore_best_weights=True)
    t0 = time.perf_counter()
    printer = common.epoch_printer(lambda epoch, logs, elapsed: (
        f"{prefix} epoch {epoch + 1}/{config['epochs']}: base_loss "
        f"{float(logs.get('base_loss', float('nan'))):.4f}, val perfect match "
        f"{logs['val_perfect_match']:.1f}%, optimal cost {logs['val_optimal_cost']:.1f}% "
        f"({elapsed:.0f} s)"), progress)

    history = model.fit(x, y, batch_size=config["batch_size"], epochs=config["epochs"],
                        shuffle=True, verbose=0, callbacks=[timer, best, printer])
    curve = {"epoch": list(best.epochs),
             "val_perfect_match": best.history["val_perfect_match"],
             "base_loss": [float(v) for v in history.history.get(
                 "base_loss", [float("nan")] * len(best.epochs))]}
    xs, costs, paths = data["test"]
    test = path_metrics(model.predict(xs, batch_size=200, verbose=0), costs, paths)
    return {"variant": variant, "samples": samples, "seed": seed,
            "tikhonov": None if variant == "baseline" else config["tikhonov"],
            "test": test, "best_epoch": best.best_epoch, "curve": curve,
            "diverged": not all(math.isfinite(v) for v in curve["base_loss"]),
            "step_time": common.step_time_stats(timer.times, config["warmup_steps"]),
            "wall_s": time.perf_counter() - t0}


def summarize(runs, config):
    """One row per samples x variant: test metrics over seeds, Welch test, step ratio."""
    metrics = {k: (lambda r, k=k: r["test"][k])
               for k in ("perfect_match", "optimal_cost", "cost_ratio")}
    rows = []
    for samples in config["samples"]:
        group = {v: [r for r in runs if r["variant"] == v and r["samples"] == samples]
                 for v in config["variants"]}
        rows += common.variant_rows(group, metrics, samples=samples)
    return rows


def run_benchmark(config, progress=True, data=None, store=None, source=None):
    """Every variant x samples x seed of ``config``; returns the results dict.

    ``data`` (normalised, with its ``source`` description) is loaded when not given;
    ``store`` (a `keras_newton.app.common.ResultsStore`) receives each finished run, and
    its stored runs are not run again.
    """
    from keras_newton.datasets.warcraft import normalise_warcraft

    config = validate_config(config)
    t0 = time.perf_counter()
    if data is None:
        arrays, source = load_data(config, verbose=progress)
        data = normalise_warcraft(arrays)
    else:
        source = source or {"kind": "given"}
    jobs = [(v, k, s) for k in config["samples"] for s in config["seeds"]
            for v in config["variants"]]

    def prefix(i, n, job):
        variant, samples, seed = job
        return (f"[{i}/{n}] {config['method']} {variant}"
                + (f" S={samples}" if samples else "") + f" seed {seed}")

    def train(job, prefix):
        variant, samples, seed = job
        run = train_one(data, variant, samples, seed, config, progress, prefix)
        if progress:
            t = run["test"]
            print(f"{prefix}: test perfect match {t['perfect_match']:.1f}%, optimal cost "
                  f"{t['optimal_cost']:.1f}%, cost ratio {t['cost_ratio']:.4f} (epoch "
                  f"{run['best_epoch']}); step {1e3 * run['step_time']['median_s']:.0f} ms; "
                  f"{run['wall_s']:.0f} s", flush=True)
        return run

    runs = common.run_jobs(jobs, train, store, progress, prefix)
    return {"benchmark": "shortest_path", "config": config, "data": source,
            "environment": common.environment(), "runs": runs,
            "summary": summarize(runs, config), "wall_time_s": time.perf_counter() - t0}


def format_table(results):
    c = results["config"]
    title = (f"Warcraft 12x12 shortest paths, {c['method']}: test metrics at the best "
             f"validation epoch, {len(c['seeds'])} seeds, {c['epochs']} epochs")
    lines = [title, "-" * len(title),
             f"{'variant':<10} {'S':>3} {'tikhonov':>8} {'perfect match %':>17} "
             f"{'optimal cost %':>17} {'cost ratio':>10} {'step ratio':>10}"]
    for row in results["summary"]:
        pm, oc, cr = row["perfect_match"], row["optimal_cost"], row["cost_ratio"]
        tik = "-" if row["tikhonov"] is None else f"{row['tikhonov']:g}"
        ratio = "-" if row["step_time_ratio"] is None else f"{row['step_time_ratio']:.2f}x"
        lines.append(f"{row['variant']:<10} {row['samples'] or '-':>3} {tik:>8} "
                     f"{pm['mean']:>6.1f} ± {pm['std']:<5.1f}{common.mark(pm):>2} "
                     f"{oc['mean']:>6.1f} ± {oc['std']:<5.1f}{common.mark(oc):>2} "
                     f"{cr['mean']:>10.4f} {ratio:>10}")
    lines.append("++ / --: significantly better / worse than the baseline with the same S "
                 f"(Welch, alpha {common.ALPHA}); +: better mean. Step ratio: median "
                 "training-step time over the baseline's, same run.")
    return "\n".join(lines)


def plot(results, path):
    curves = {}
    for row in results["summary"]:
        rs = [r for r in results["runs"]
              if r["variant"] == row["variant"] and r["samples"] == row["samples"]]
        ys = np.array([r["curve"]["val_perfect_match"] for r in rs])
        label = row["variant"] + (f" S={row['samples']}" if row["samples"] else "")
        curves[label] = (rs[0]["curve"]["epoch"], ys.mean(0), ys.std(0))
    return common.plot_convergence(curves, path, xlabel="epoch",
                                   ylabel="validation perfect match (%)",
                                   title=results["config"]["method"])


def register(subparsers):
    p = subparsers.add_parser("shortest-path", help="Warcraft shortest paths (Tables 2-3)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--method", help="bf_for_l1, bf_for_l2, bf_while_l1, bf_while_l2, "
                   "smooth_loss, smooth_algorithm or fenchel_young (default)")
    p.add_argument("--variants", type=common.parse_list)
    p.add_argument("--samples", type=lambda s: common.parse_list(s, int),
                   help="samples per prediction for sampled methods, e.g. 3,10,30")
    p.add_argument("--seeds", type=common.parse_seeds,
                   help="comma list of distinct seeds, e.g. 0,1 (default 0,1)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--sigma", type=float, help="noise scale of the sampled methods")
    p.add_argument("--beta", type=float, help="inverse temperature of relaxed Bellman-Ford")
    p.add_argument("--tikhonov", type=float)
    p.add_argument("--data", help="folder with the original .npy layout")
    p.add_argument("--data-cache", help="where the generated look-alike is kept")
    p.add_argument("--n-train", type=int)
    p.add_argument("--n-val", type=int)
    p.add_argument("--n-test", type=int)
    p.add_argument("--jit-compile", action="store_true", default=None)
    p.add_argument("--absorbing-source", action="store_true", default=None,
                   help="relaxed Bellman-Ford: keep the traceback's mass at the source (a "
                   "deviation from AlgoVision; default off)")
    p.add_argument("--hessian-baseline", choices=("unperturbed", "none"),
                   help="Fenchel-Young Hessian estimate: subtract w(c) (unperturbed, the "
                   "default) or not (none, Berthet et al.'s estimator)")
    common.add_run_options(p, "results/shortest_path")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--paper", action="store_true", help="the paper's settings (GPU)")
    group.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    p.set_defaults(func=run)


def _load(config):
    from keras_newton.datasets.warcraft import normalise_warcraft

    arrays, source = load_data(config)
    return normalise_warcraft(arrays), source


def run(args):
    preset = "paper" if args.paper else "quick" if args.quick else "cpu"
    keys = ("method", "variants", "samples", "seeds", "epochs", "batch_size",
            "learning_rate", "sigma", "beta", "tikhonov", "data", "data_cache", "n_train",
            "n_val", "n_test", "jit_compile", "absorbing_source", "hessian_baseline")

    def settings():
        config = make_config(preset, **{k: getattr(args, k) for k in keys})
        for variant in config["variants"]:  # the library checks sigma, beta...: before data
            for samples in config["samples"]:
                make_loss(config, variant, samples, seed=0)
        return config

    return common.run_bench(
        args, "shortest_path", settings, _load,
        lambda config, data, store: run_benchmark(config, data=data[0], source=data[1],
                                                  store=store),
        format_table, plot)

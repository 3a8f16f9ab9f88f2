"""Pieces every benchmark shares: step timing, Welch's t-test, environment, JSON, plots."""

import json
import math
import os
import platform
import statistics
import time

import numpy as np

ALPHA = 0.05


def step_timer():
    """A Keras callback recording the wall time of every training step.

    Overriding ``on_train_batch_end`` makes Keras dispatch it synchronously, after the
    step's logs were converted to Python numbers: the device has finished the step.
    """
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []
            self._t0 = None

        def on_train_batch_begin(self, batch, logs=None):
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self._t0)

    return StepTimer()


def step_time_stats(times, warmup):
    """Median/mean/min of step times after ``warmup`` steps (all of them if too few)."""
    kept = times[warmup:] or times
    return {
        "median_s": float(statistics.median(kept)),
        "mean_s": float(statistics.fmean(kept)),
        "min_s": float(min(kept)),
        "n_timed": len(kept),
        "n_steps": len(times),
    }


def welch_test(values, baseline):
    """Welch's t-test of ``values`` against ``baseline``: ``(t, p)``; NaN when undefined.

    Undefined with fewer than two values on a side, or zero variance on both sides.
    """
    from scipy import stats

    values, baseline = np.asarray(values, float), np.asarray(baseline, float)
    if len(values) < 2 or len(baseline) < 2:
        return float("nan"), float("nan")
    if np.var(values) == 0 and np.var(baseline) == 0:
        return float("nan"), float("nan")
    t, p = stats.ttest_ind(values, baseline, equal_var=False)
    return float(t), float(p)


def compare(values, baseline):
    """Mean/std of ``values`` and the Welch verdict against ``baseline`` (a dict)."""
    a = np.asarray(values, float)
    row = {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
           "n": int(a.size), "t": None, "p_value": None, "better_mean": None,
           "significantly_better": None, "significantly_worse": None}
    if baseline is not None:
        b = np.asarray(baseline, float)
        t, p = welch_test(a, b)
        significant = math.isfinite(p) and p < ALPHA
        row.update(t=t if math.isfinite(t) else None, p_value=p if math.isfinite(p) else None,
                   better_mean=bool(a.mean() > b.mean()),
                   significantly_better=bool(significant and a.mean() > b.mean()),
                   significantly_worse=bool(significant and a.mean() < b.mean()))
    return row


def mark(row):
    """``++`` significantly better, ``--`` significantly worse, ``+`` better mean."""
    if row.get("significantly_better"):
        return "++"
    if row.get("significantly_worse"):
        return "--"
    if row.get("better_mean"):
        return "+"
    return ""


def environment():
    """Versions and devices, for the results file."""
    import keras

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "devices": [str(d) for d in keras.distribution.list_devices()],
        "cpu_count": os.cpu_count(),
    }
    if env["backend"] == "tensorflow":
        import tensorflow  # only for its version number

        env["tensorflow"] = tensorflow.__version__
    return env


def write_json(results, out_dir, name="results.json"):
    """Writes ``results`` to ``out_dir/name``; returns the path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    with open(path, "w") as f:
        json.dump(results, f, indent=2, allow_nan=True)
    return path


def plot_convergence(curves, path, xlabel="step", ylabel="validation exact match (%)",
                     title=None):
    """PNG of ``{label: (xs, mean_ys, std_ys)}``: one line (and band) per variant.

    Returns the path, or ``None`` when matplotlib is not installed (extra ``[bench]``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'keras-newton[bench]'): no plot.")
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, (xs, mean, std) in curves.items():
        xs, mean, std = (np.asarray(v, float) for v in (xs, mean, std))
        ax.plot(xs, mean, label=label, marker="o", markersize=3)
        ax.fill_between(xs, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def parse_list(text, cast=str):
    """``"a,b, c"`` -> ``[cast(a), cast(b), cast(c)]``."""
    return [cast(v.strip()) for v in str(text).split(",") if v.strip()]


def run_command(name, make_config, run_benchmark, format_table, plot=None, out="results"):
    """The body of a ``keras-newton bench NAME`` command.

    Builds the config (``make_config()``), runs the benchmark, prints the table, and writes
    ``results.json``, ``table.txt`` and (with ``plot``) ``convergence.png`` into ``out``.
    Bad settings or missing data print one error line and return exit code 2.
    """
    import sys

    try:
        config = make_config()
        results = run_benchmark(config)
    except (ValueError, FileNotFoundError) as e:
        print(f"keras-newton bench {name}: error: {e}", file=sys.stderr)
        return 2
    table = format_table(results)
    print()
    print(table)
    results["table"] = table
    path = write_json(results, out)
    with open(os.path.join(out, "table.txt"), "w") as f:
        f.write(table + "\n")
    png = plot(results, os.path.join(out, "convergence.png")) if plot else None
    print(f"\nresults: {path}" + (f"; plot: {png}" if png else ""))
    return 0


def variant_rows(by_variant, metrics, **labels):
    """Summary rows, one per variant, of runs grouped as ``{variant: [run, ...]}``.

    ``metrics`` maps a row key to ``run -> number``; each becomes `compare`'s dict (with the
    per-seed ``values``) against the ``"baseline"`` group. Each row also holds the median
    step time, its ratio to the baseline's, the variant's tikhonov and ``labels``.
    """
    step = {v: float(np.median([r["step_time"]["median_s"] for r in rs]))
            for v, rs in by_variant.items()}
    base = by_variant.get("baseline")
    rows = []
    for variant, rs in by_variant.items():
        row = {"variant": variant, **labels, "tikhonov": rs[0]["tikhonov"]}
        for key, get in metrics.items():
            values = [get(r) for r in rs]
            ref = None if base is None or variant == "baseline" else [get(r) for r in base]
            row[key] = dict(compare(values, ref), values=values)
        row["step_time_median_s"] = step[variant]
        row["step_time_ratio"] = step[variant] / step["baseline"] if "baseline" in step else None
        rows.append(row)
    return rows


def check_tikhonov_grid(values, name="tikhonov"):
    """A tikhonov sweep's values as floats, in the given order.

    Raises ValueError naming ``name`` when the list is empty, holds a value that is not a
    number, negative, NaN or infinite, or repeats a value.
    """
    values = list(values)
    if not values:
        raise ValueError(f"{name} sweep is empty: give numbers >= 0, e.g. 1e-3,0.1,10.")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
            raise ValueError(f"{name} values must be numbers >= 0; received {v!r} in "
                             f"{values!r}.")
        v = float(v)
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} values must be finite and >= 0; received {v!r} in "
                             f"{values!r}.")
        out.append(v)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} sweep has repeated values: {out!r}.")
    return out


def pick_best(scores):
    """The key of the highest score among ``[(key, score), ...]``; the first on ties.

    Non-finite scores never win; ``None`` when no score is finite. A sweep picks its
    tikhonov with this on validation scores (never on test).
    """
    best_key, best = None, -math.inf
    for key, score in scores:
        if score is not None and math.isfinite(score) and score > best:
            best_key, best = key, score
    return best_key

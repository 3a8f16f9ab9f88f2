"""Pieces every benchmark shares: step timing, Welch's t-test, environment, JSON, plots,
and the command-line contract of ``keras-newton bench`` (seeds, ``--out``, ``results.json``
kept after every run, Ctrl-C, ``--resume`` / ``--overwrite``, one-line user errors).

This module imports only the standard library and NumPy at its top, so that the command
line parses without loading Keras or TensorFlow.
"""

import argparse
import json
import math
import os
import platform
import shlex
import signal
import statistics
import sys
import tempfile
import time

import numpy as np

ALPHA = 0.05



def recipes():
    """`keras_newton.recipes`, imported on first use, so that the command line parses
    without Keras."""
    from keras_newton import recipes as module

    return module


def preset_config(defaults, presets, preset, overrides, validate):
    """A bench's settings: ``defaults``, then ``presets[preset]``, then the overrides that
    are not ``None``; ``preset`` recorded; checked by ``validate(config)``."""
    config = dict(defaults)
    config.update(presets[preset])
    config.update({k: v for k, v in overrides.items() if v is not None})
    config["preset"] = preset
    return validate(config)


def recipe_attributes(module_name, names):
    """A module ``__getattr__`` (PEP 562) reading ``names`` (``{attribute: name in
    keras_newton.recipes}``) from the library on first use."""

    def __getattr__(name):
        if name in names:
            return getattr(recipes(), names[name])
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__

def epoch_printer(line, enabled=True):
    """A Keras callback printing ``line(epoch, logs, elapsed_s)`` after every epoch (the
    benches' progress lines); prints nothing when ``enabled`` is false."""
    import keras

    t0 = time.perf_counter()

    def on_epoch_end(epoch, logs=None):
        if enabled:
            print(line(epoch, logs or {}, time.perf_counter() - t0), flush=True)

    return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)


def step_timer():
    """A Keras callback recording the wall time of every training step (and stopping the
    training after the step when Ctrl-C was pressed during `run_bench`).

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
            _Interrupt.check()  # Ctrl-C during `run_bench`: stop after this step

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


def _devices(keras):
    """The backend's devices as strings (``keras.distribution`` has no list on PyTorch)."""
    try:
        return [str(d) for d in keras.distribution.list_devices()]
    except (AttributeError, NotImplementedError):
        if keras.backend.backend() == "torch":
            import torch

            return ["cpu:0"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return []


def environment():
    """Versions and devices, for the results file."""
    import keras

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "devices": _devices(keras),
        "cpu_count": os.cpu_count(),
    }
    # The backend's own version; only the backend in use is imported (a JAX or PyTorch
    # run needs no TensorFlow).
    if env["backend"] in ("tensorflow", "jax", "torch"):
        import importlib

        env[env["backend"]] = importlib.import_module(env["backend"]).__version__
    return env


def write_json(results, out_dir, name="results.json"):
    """Writes ``results`` to ``out_dir/name`` atomically (a temporary file in the same
    folder, then `os.replace`): the file is always either the old or the new whole file.
    Returns the path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(results, f, indent=2, allow_nan=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
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


_LIST_OF = {str: ("names", "a name", "a,b"), int: ("integers", "an integer", "3,10"),
            float: ("numbers", "a number", "0.1,1")}


def parse_list(text, cast=str):
    """``"a,b, c"`` -> ``[cast(a), cast(b), cast(c)]``: the comma-list options.

    Raises `argparse.ArgumentTypeError` (one line) for an empty item (``","``, ``"a,,b"``,
    ``""``) or an item that ``cast`` (``str``, ``int`` or ``float``) refuses.
    """
    what, one, example = _LIST_OF.get(cast, ("values", "a value", "a,b"))
    hint = f"give a comma list of {what}, e.g. {example}"
    items = [item.strip() for item in str(text).split(",")]
    if any(not item for item in items):
        raise argparse.ArgumentTypeError(f"empty item in {text!r}: {hint}.")
    values = []
    for item in items:
        try:
            values.append(cast(item))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not {one} in {text!r}: {hint}.") from None
    return values


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


# -- the command-line contract ---------------------------------------------------------


class UsageError(Exception):
    """A user error: ``keras-newton`` prints ``keras-newton: error: <message>`` (one line)
    and exits with status 2, without a traceback."""


#: Exit status after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


def parse_seeds(text):
    """``"0,1,2"`` -> ``[0, 1, 2]``: the ``--seeds`` of every bench.

    A comma list of distinct integers >= 0. Raises `argparse.ArgumentTypeError` (one line)
    for an empty item, a non-integer, a negative seed or a repeated seed.
    """
    items = [item.strip() for item in str(text).split(",")]
    example = "give a comma list of distinct integers >= 0, e.g. 0,1,2"
    if any(not item for item in items):
        raise argparse.ArgumentTypeError(f"empty item in {text!r}: {example}.")
    seeds = []
    for item in items:
        try:
            seed = int(item)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not an integer in {text!r}: {example}.") from None
        if seed < 0:
            raise argparse.ArgumentTypeError(f"{seed} is negative in {text!r}: {example}.")
        if seed in seeds:
            raise argparse.ArgumentTypeError(f"seed {seed} is repeated in {text!r}: "
                                             f"{example}.")
        seeds.append(seed)
    return seeds


def int_at_least(low):
    """An argparse ``type``: an integer ``>= low`` (one-line error otherwise)."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer.") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}; received "
                                             f"{value}.")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def check_out_dir(path):
    """Creates ``path`` (a directory) if needed and checks that a file can be written in
    it; returns the path. Raises `UsageError` otherwise, before any training."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--out {path!r} is a file, not a directory.")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {path!r} cannot be created: {e.strerror or e}.") from None
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write_check.")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise UsageError(f"--out {path!r} is not writable: {e.strerror or e}.") from None
    return path


def add_run_options(parser, default_out):
    """``--out``, ``--resume`` and ``--overwrite`` of a bench command."""
    parser.add_argument("--out", default=default_out,
                        help=f"output folder: results.json (every finished run, rewritten "
                        f"after each), table.txt, plots (default {default_out})")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true",
                       help="run only the runs missing from --out's results.json (same "
                       "settings), then write the summary")
    group.add_argument("--overwrite", action="store_true",
                       help="start afresh, replacing --out's results.json")


def _jsonable(value):
    """``value`` as it reads back from JSON (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(value, allow_nan=True))


def _job_id(job):
    return json.dumps(_jsonable(list(job)))


class ResultsStore:
    """``results.json`` of a bench run, holding every finished run at all times.

    Each finished run is added with its job key (`add`) and the file is rewritten
    atomically; `get` returns a stored run of a job (resuming). The file holds
    ``{"benchmark", "status", "config", "runs", "summary"}``; ``status`` is ``"running"``,
    ``"interrupted"`` or ``"complete"``, and the summary is filled in at the end (`finish`).
    """

    def __init__(self, out, benchmark, config, runs=()):
        self.out, self.benchmark = out, benchmark
        self.path = os.path.join(out, "results.json")
        self.config = config
        self.runs = list(runs)
        self._by_job = {_job_id(r["job"]): r for r in self.runs if "job" in r}

    @classmethod
    def open(cls, out, benchmark, config, resume=False, overwrite=False):
        """The store of ``out``: the stored runs with ``resume`` (same config required),
        none with ``overwrite``; without either an existing ``results.json`` is a
        `UsageError` (the file is left untouched). Writes nothing (see `start`)."""
        path = os.path.join(out, "results.json")
        if not os.path.exists(path) or overwrite:
            return cls(out, benchmark, config)
        if not resume:
            raise UsageError(f"{path} exists: pass --resume to complete it or --overwrite "
                             "to start afresh.")
        try:
            with open(path) as f:
                stored = json.load(f)
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot resume from {path}: {e}.") from None
        if not isinstance(stored, dict) or stored.get("benchmark") != benchmark:
            raise UsageError(f"cannot resume from {path}: it holds the "
                             f"{stored.get('benchmark') if isinstance(stored, dict) else '?'}"
                             f" benchmark, not {benchmark}.")
        old, new = stored.get("config", {}), _jsonable(config)
        differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if differ:
            changes = "; ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now"
                                for k in differ)
            raise UsageError(f"cannot resume from {path}: the settings differ ({changes}); "
                             "pass the same options, or --overwrite.")
        return cls(out, benchmark, config, stored.get("runs", []))

    def get(self, job):
        """The stored run of ``job`` (a tuple of JSON values), or ``None``."""
        return self._by_job.get(_job_id(job))

    def start(self):
        """Writes the file (no run yet, or the resumed runs)."""
        self.write("running")

    def add(self, job, run):
        """Records a finished ``run`` of ``job`` and rewrites the file."""
        run["job"] = _jsonable(list(job))
        self.runs.append(run)
        self._by_job[_job_id(job)] = run
        self.write("running")

    def write(self, status):
        return write_json({"benchmark": self.benchmark, "status": status,
                           "config": self.config, "runs": self.runs, "summary": None},
                          self.out)

    def finish(self, results):
        """Writes the complete ``results`` (with their summary)."""
        return write_json(dict(results, status="complete"), self.out)


class _Interrupt:
    """Ctrl-C during a bench: the SIGINT handler only records the request; `check` raises
    KeyboardInterrupt from ordinary code, after the current training step (`step_timer`)
    or before the next run (`run_jobs`). A KeyboardInterrupt raised by the signal itself
    could land in a ``__del__`` or a weakref callback, where Python prints and drops it. A
    second Ctrl-C raises at once."""

    requested = False

    @classmethod
    def handler(cls, signum, frame):
        if cls.requested:
            raise KeyboardInterrupt
        cls.requested = True

    @classmethod
    def check(cls):
        if cls.requested:
            raise KeyboardInterrupt


def run_jobs(jobs, train, store=None, progress=True, prefix=lambda i, n, job: ""):
    """Runs ``train(job, prefix)`` for each job not already in ``store``; returns the runs
    in job order (stored ones included), each added to ``store`` when it finishes."""
    runs = []
    for i, job in enumerate(jobs, 1):
        _Interrupt.check()
        stored = store.get(job) if store is not None else None
        if stored is not None:
            if progress:
                print(f"{prefix(i, len(jobs), job)}: in results.json, not run again",
                      flush=True)
            runs.append(stored)
            continue
        run = train(job, prefix(i, len(jobs), job))
        if store is not None:
            store.add(job, run)
        runs.append(run)
    return runs


def resume_command(args):
    """The command line that resumes ``args``' command."""
    argv = [a for a in getattr(args, "argv", []) if a not in ("--resume", "--overwrite")]
    return "keras-newton " + " ".join(shlex.quote(a) for a in argv) + " --resume"


def run_bench(args, benchmark, make_config, load_data, run_benchmark, format_table,
              plot=None):
    """The body of every ``keras-newton bench NAME`` command.

    In order: the config (``make_config()``; a ValueError is a user error), ``--out``
    (`check_out_dir`), ``results.json`` there (`ResultsStore.open`: ``--resume``,
    ``--overwrite``, or stop), the data (``load_data(config)``; ValueError,
    FileNotFoundError: user errors), then ``run_benchmark(config, data, store)``, which
    adds each finished run to the store. Prints the table and writes ``results.json`` with
    the summary, ``table.txt`` and (with ``plot``) ``convergence.png``.

    Ctrl-C keeps the finished runs in ``results.json``, prints one line saying how to
    resume and returns 130. User errors raise `UsageError` (one line, exit status 2).
    """
    try:
        config = make_config()
    except (ValueError, TypeError) as e:  # a setting of the wrong value or type
        raise UsageError(str(e)) from None
    out = check_out_dir(args.out)
    store = ResultsStore.open(out, benchmark, config, resume=args.resume,
                              overwrite=args.overwrite)
    if args.resume and not store.runs:
        print(f"nothing to resume in {store.path}: running everything", flush=True)
    try:
        data = load_data(config)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    store.start()
    _Interrupt.requested = False
    previous = signal.signal(signal.SIGINT, _Interrupt.handler)
    try:
        results = run_benchmark(config, data, store)
        _Interrupt.check()
    except KeyboardInterrupt:
        store.write("interrupted")
        print(f"keras-newton: interrupted: {len(store.runs)} finished run(s) kept in "
              f"{store.path}; resume with: {resume_command(args)}", file=sys.stderr,
              flush=True)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, previous)
    table = format_table(results)
    print()
    print(table)
    results["table"] = table
    path = store.finish(results)
    with open(os.path.join(out, "table.txt"), "w") as f:
        f.write(table + "\n")
    png = plot(results, os.path.join(out, "convergence.png")) if plot else None
    print(f"\nresults: {path}" + (f"; plot: {png}" if png else ""))
    return 0

"""Train-step time per Keras backend: Newton losses vs their baseline, on each backend.

The same script times, on TensorFlow, JAX and PyTorch (one child process per backend,
``KERAS_BACKEND`` set before Keras is imported), ``model.train_on_batch`` of

- the MNIST MLP ``M1`` (`keras_newton.models.classification_model`, 5 x 100 ReLU), batch
  100, SGD 0.1, with `keras_newton.recipes.classification_loss`: ``baseline`` (softmax
  cross-entropy from logits), ``hessian`` and ``fisher`` (`NewtonLoss`, lambda 1);
- the four-digit ranking CNN at n = 10 (`keras_newton.models.multi_digit_cnn`), batch 20
  sets of 28x112 random images, Adam, NeuralSort and DiffSort (odd-even, steepness 10,
  Cauchy), built exactly as ``benchmarks/ranking_step_time.py`` builds them (its
  ``build`` / ``make_loss`` are imported, so the TensorFlow rows are comparable with that
  script): ``baseline`` = ``RankingLoss``; ``hessian`` = ``NewtonLoss`` with autodiff
  curvature (``RankingLoss(derivatives="autodiff")``); ``hessian_cf`` = the closed-form
  derivatives (``RankingLoss(derivatives="auto")``, what
  ``keras_newton.recipes.ranking_loss("hessian")`` builds); ``fisher`` = the empirical
  Fisher. (The tikhonov value, 1e-2 here, does not change the cost of a step.)

Within one model / relaxation / jit mode the variants are compiled side by side, warmed up,
then timed interleaved step by step in a shuffled order (load from other processes hits
them alike). Reported: median wall time and median process CPU time (all threads of the
child) per step, and the ratios to the baseline of the same backend, model, relaxation and
jit mode: median over median, and "paired", the median over the rounds of each step's
ratio to the baseline step of the same round (a round = every variant once). On a shared
machine prefer the CPU-time ratios, and the paired ones where step times jump between
phases (seen with PyTorch: its threads spin, so its CPU time grows with the load too).

jit modes (``--jit``, ``jit_compile`` of ``model.compile``): TensorFlow: ``False`` =
``tf.function`` graph, ``True`` = XLA; JAX: ``False`` = eager op by op, ``True`` =
``jax.jit``; PyTorch: ``False`` = eager, ``True`` = ``torch.compile`` (slow to compile,
and in our smoke run a compiled MLP step took 223 ms against 3 ms eager). The default
``auto`` times both modes on TensorFlow and JAX and only eager on PyTorch; ``--jit both``
or ``true`` includes ``torch.compile``.

A variant that fails on a backend (building, compiling or stepping) is reported with its
one-line error in its cell; the other variants go on.

    python benchmarks/backend_step_time.py --quick          # smoke run, ~10 min on 2 cores
    # the run of docs/results.md, "Step time per backend" (~11 min on 2 cores):
    python benchmarks/backend_step_time.py --steps 10 --warmup 2 --data PATH/TO/mnist.npz
    python benchmarks/backend_step_time.py --backends jax --models ranking --jit true

The MLP uses real MNIST digits when ``--data`` (or ``$KERAS_NEWTON_MNIST``) names Keras'
``mnist.npz``, else random images of MNIST's shape (the step time does not depend on the
pixels); the ranking CNN always uses random images, as ``ranking_step_time.py`` does.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

BACKENDS = ("tensorflow", "jax", "torch")
MODELS = ("mlp", "ranking")
MLP_VARIANTS = ("baseline", "hessian", "fisher")
# The names of benchmarks/ranking_step_time.py's VARIANTS (checked in the child).
RANKING_VARIANTS = ("baseline", "hessian", "hessian_cf", "fisher")
RELAXATIONS = ("diffsort", "neuralsort")
MLP_NAME = "M1"
MLP_LR = 0.1
DATA_ENV = "KERAS_NEWTON_MNIST"


def _one_line(error, limit=160):
    """``Type: first non-empty line of the message``, shortened to ``limit`` characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _jit_modes(jit, backend):
    if jit == "auto":
        return (False,) if backend == "torch" else (False, True)
    return {"false": (False,), "true": (True,), "both": (False, True)}[jit]


# -- child: one backend --------------------------------------------------------------------


def time_interleaved(builders, batches, steps, warmup, seed=0):
    """Times ``train_on_batch`` of several models interleaved step by step.

    Args:
        builders: ``{variant: () -> compiled model}``.
        batches: list of ``(x, y)``; step ``i`` trains on ``batches[i % len(batches)]``.
        steps, warmup: timed and untimed steps per variant (``warmup >= 1``: the first
            step traces / compiles).

    Returns:
        ``{variant: record}``, a record holding ``wall_s`` and ``cpu_s`` (medians per
        step), ``first_s`` (the first step, including tracing and compiling) and
        ``steps`` (and the per-step times, ``wall_steps_s`` / ``cpu_steps_s``, in run
        order), or ``error`` (one line) for a variant that failed.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    records, models = {}, {}
    for variant, build in builders.items():
        try:
            model = build()
            x, y = batches[0]
            start = time.perf_counter()
            model.train_on_batch(x, y)
            first = time.perf_counter() - start
            for i in range(1, max(warmup, 1)):
                model.train_on_batch(*batches[i % len(batches)])
            models[variant] = model
            records[variant] = {"first_s": first}
        except Exception as error:  # noqa: BLE001 - reported in the table
            records[variant] = {"error": _one_line(error)}
    wall = {v: [] for v in models}
    cpu = {v: [] for v in models}
    order = list(models)
    for step in range(steps):
        rng.shuffle(order)  # no variant always runs right after another
        x, y = batches[(warmup + step) % len(batches)]
        for variant in list(order):
            try:
                start, start_cpu = time.perf_counter(), time.process_time()
                models[variant].train_on_batch(x, y)
                wall[variant].append(time.perf_counter() - start)
                cpu[variant].append(time.process_time() - start_cpu)
            except Exception as error:  # noqa: BLE001
                records[variant] = {"error": f"step {step}: {_one_line(error)}"}
                order.remove(variant)
    for variant in order:
        records[variant].update(wall_s=statistics.median(wall[variant]),
                                cpu_s=statistics.median(cpu[variant]), steps=steps,
                                wall_steps_s=wall[variant], cpu_steps_s=cpu[variant])
    return records


def _mlp_batches(data, batch, count, seed=0):
    """``count`` batches of ``batch`` MNIST digits (uint8 pixels, integer labels), from the
    ``.npz`` at ``data``, else random images of the same shape and dtype."""
    import numpy as np

    if data:
        from keras_newton.datasets.mnist import load_npz

        (x, y), _ = load_npz(data)
        count = min(count, len(x) // batch)
        return [(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch].astype("int32"))
                for i in range(count)]
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, size=(batch, 28, 28), dtype=np.uint8),
             rng.integers(0, 10, size=(batch,), dtype=np.int32)) for _ in range(count)]


def child(args):
    """Runs in a process with ``KERAS_BACKEND`` set; writes its records as JSON."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, HERE)
    sys.path.insert(0, REPO)
    import keras
    import numpy as np

    import ranking_step_time
    from keras_newton import recipes
    from keras_newton.models import classification_model

    backend = keras.backend.backend()
    assert backend == args.backend, (backend, args.backend)
    assert set(RANKING_VARIANTS) <= set(ranking_step_time.VARIANTS)
    records = []

    def report(model, relaxation, jit, results):
        for variant, record in results.items():
            records.append(dict(backend=backend, model=model, relaxation=relaxation, jit=jit,
                                variant=variant, **record))
            cells = (f"{record['wall_s'] * 1e3:8.1f} ms wall {record['cpu_s'] * 1e3:8.1f} ms"
                     f" cpu (first {record['first_s']:.1f} s)" if "wall_s" in record
                     else record["error"])
            print(f"  [{backend}] {model} {relaxation or ''} jit={jit} {variant}: {cells}",
                  flush=True)

    def mlp_builder(variant, jit):
        def build():
            keras.utils.set_random_seed(args.seed)
            model = classification_model(MLP_NAME)
            loss, _ = recipes.classification_loss(variant)
            model.compile(optimizer=keras.optimizers.SGD(MLP_LR), loss=loss,
                          jit_compile=jit)
            return model
        return build

    def ranking_builder(relaxation, variant, jit):
        return lambda: ranking_step_time.build(args.n, relaxation, variant, jit, args.seed)

    jit_modes = _jit_modes(args.jit, backend)
    if "mlp" in args.models:
        batches = _mlp_batches(args.data, args.mlp_batch, args.warmup + args.mlp_steps,
                               args.seed)
        for jit in jit_modes:
            builders = {v: mlp_builder(v, jit) for v in args.mlp_variants}
            report(f"mlp_{MLP_NAME}", None, jit,
                   time_interleaved(builders, batches, args.mlp_steps, args.warmup,
                                    args.seed))
    if "ranking" in args.models:
        rng = np.random.default_rng(args.seed)  # as ranking_step_time.time_steps
        x = rng.random((args.batch, args.n, 28, 112), dtype=np.float32)
        y = rng.integers(0, 10000, size=(args.batch, args.n)).astype(np.float32)
        for relaxation in args.relaxations:
            for jit in jit_modes:
                builders = {v: ranking_builder(relaxation, v, jit)
                            for v in args.ranking_variants}
                report(f"ranking_n{args.n}", relaxation, jit,
                       time_interleaved(builders, [(x, y)], args.steps, args.warmup,
                                        args.seed))
    meta = {"backend": backend, "keras": keras.__version__}
    for module in {"tensorflow": ["tensorflow"], "jax": ["jax", "jaxlib"],
                   "torch": ["torch"]}[backend]:
        meta[module] = __import__(module).__version__
    if backend == "torch":
        import torch

        meta["threads"] = torch.get_num_threads()
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "records": records}, f)


# -- parent: one child per backend, tables -------------------------------------------------


def _child_argv(args, backend, out):
    argv = [sys.executable, os.path.abspath(__file__), "--child", "--backend", backend,
            "--out", out, "--jit", args.jit, "--steps", str(args.steps),
            "--mlp-steps", str(args.mlp_steps), "--warmup", str(args.warmup),
            "--n", str(args.n), "--batch", str(args.batch),
            "--mlp-batch", str(args.mlp_batch), "--seed", str(args.seed),
            "--models", *args.models, "--relaxations", *args.relaxations,
            "--mlp-variants", *args.mlp_variants,
            "--ranking-variants", *args.ranking_variants]
    if args.data:
        argv += ["--data", args.data]
    return argv


def run_backend(args, backend):
    """Runs the child of ``backend``; returns ``(meta, records)`` (records of a child that
    failed as a whole: one error record)."""
    env = dict(os.environ, KERAS_BACKEND=backend)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "records.json")
        log = os.path.join(tmp, "stderr.log")
        start = time.perf_counter()
        with open(log, "w", encoding="utf-8") as err:
            try:
                rc = subprocess.run(_child_argv(args, backend, out), env=env, stderr=err,
                                    timeout=args.child_timeout).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        seconds = time.perf_counter() - start
        if rc == 0 and os.path.exists(out):
            with open(out, encoding="utf-8") as f:
                result = json.load(f)
            result["meta"]["seconds"] = seconds
            return result["meta"], result["records"]
        with open(log, encoding="utf-8", errors="replace") as f:
            tail = [line.rstrip() for line in f if line.strip()][-15:]
    print(f"[{backend}] child failed (rc={rc}); last lines of its stderr:", flush=True)
    print("\n".join("    " + line for line in tail), flush=True)
    last = tail[-1] if tail else f"rc={rc}"
    return ({"backend": backend, "seconds": seconds},
            [{"backend": backend, "model": "*", "relaxation": None, "jit": None,
              "variant": "*", "error": f"child process failed: {last[:160]}"}])


def add_ratios(records):
    """Adds the ratios to the baseline of the same backend, model, relaxation and jit mode:
    ``wall_ratio`` / ``cpu_ratio``, median over median; ``wall_paired`` / ``cpu_paired``,
    the median over the rounds of the step's ratio to the baseline step of the same round
    (robust to slow phases that hit every variant of a round alike)."""
    base = {(r["backend"], r["model"], r["relaxation"], r["jit"]): r for r in records
            if r["variant"] == "baseline" and "wall_s" in r}
    for r in records:
        b = base.get((r["backend"], r["model"], r["relaxation"], r["jit"]))
        if b is not None and "wall_s" in r:
            r["wall_ratio"] = r["wall_s"] / b["wall_s"]
            r["cpu_ratio"] = r["cpu_s"] / b["cpu_s"]
            for kind in ("wall", "cpu"):
                pairs = zip(r[f"{kind}_steps_s"], b[f"{kind}_steps_s"])
                r[f"{kind}_paired"] = statistics.median(
                    t / t0 if t0 > 0 else float("nan") for t, t0 in pairs)
    return records


def _model_label(r):
    return r["model"] if not r["relaxation"] else f"{r['model']} {r['relaxation']}"


def format_table(records):
    """Rows: backend, model, jit, variant, median ms per step and ratio (wall, CPU), the
    paired ratios (wall, CPU) and the first step (s)."""
    header = (f"{'backend':<11}{'model':<24}{'jit':<7}{'variant':<12}{'wall ms':>9}"
              f"{'ratio':>7}{'cpu ms':>9}{'ratio':>7}{'paired w/c':>13}{'first s':>9}")
    lines = [header, "-" * len(header)]
    for r in records:
        label = (f"{r['backend']:<11}{_model_label(r):<24}{str(r['jit']):<7}"
                 f"{r['variant']:<12}")
        if "wall_s" not in r:
            lines.append(label + "  " + r["error"])
            continue
        wr = f"{r['wall_ratio']:.2f}x" if "wall_ratio" in r else "-"
        cr = f"{r['cpu_ratio']:.2f}x" if "cpu_ratio" in r else "-"
        pr = (f"{r['wall_paired']:.2f}/{r['cpu_paired']:.2f}x" if "wall_paired" in r
              else "-")
        lines.append(label + f"{r['wall_s'] * 1e3:9.1f}{wr:>7}{r['cpu_s'] * 1e3:9.1f}"
                             f"{cr:>7}{pr:>13}{r['first_s']:9.1f}")
    return "\n".join(lines)


def format_ratio_table(records, kind="ratio"):
    """Combined table: one row per model / jit / variant, the backends side by side
    (``wall / cpu`` ratio to their own baseline; ``kind`` ``"ratio"``: median over median,
    ``"paired"``: median of the per-round ratios)."""
    backends = list(dict.fromkeys(r["backend"] for r in records))
    keys = list(dict.fromkeys((_model_label(r), r["jit"], r["variant"]) for r in records
                              if r["variant"] != "*"))
    cell = {(r["backend"], _model_label(r), r["jit"], r["variant"]): r for r in records}
    header = f"{'model':<24}{'jit':<7}{'variant':<12}" + "".join(
        f"{b + ' wall/cpu':>24}" for b in backends)
    lines = [header, "-" * len(header)]
    for model, jit, variant in keys:
        cells = []
        for b in backends:
            r = cell.get((b, model, jit, variant))
            if r is None:
                cells.append("")
            elif f"wall_{kind}" in r:
                cells.append(f"{r[f'wall_{kind}']:.2f}x / {r[f'cpu_{kind}']:.2f}x")
            elif "wall_s" in r:
                cells.append(f"{r['wall_s'] * 1e3:.1f} / {r['cpu_s'] * 1e3:.1f} ms")
            else:
                cells.append("failed")
        lines.append(f"{model:<24}{str(jit):<7}{variant:<12}"
                     + "".join(f"{c:>24}" for c in cells))
    lines += [f"{r['backend']}: {r['error']}" for r in records if r["variant"] == "*"]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--jit", choices=["auto", "false", "true", "both"], default="auto",
                        help="jit_compile modes; auto: both on TensorFlow and JAX, only "
                             "eager on PyTorch (true there = torch.compile, very slow)")
    parser.add_argument("--steps", type=int, default=20,
                        help="timed steps per variant of the ranking CNN")
    parser.add_argument("--mlp-steps", type=int, default=100,
                        help="timed steps per variant of the MLP")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed steps per variant (the first traces / compiles)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 ranking steps, 10 MLP steps, 1 warm-up step")
    parser.add_argument("--n", type=int, default=10, help="items per ranking set")
    parser.add_argument("--batch", type=int, default=20, help="ranking sets per batch")
    parser.add_argument("--mlp-batch", type=int, default=100)
    parser.add_argument("--relaxations", nargs="+", default=list(RELAXATIONS),
                        choices=RELAXATIONS)
    parser.add_argument("--mlp-variants", nargs="+", default=list(MLP_VARIANTS),
                        choices=MLP_VARIANTS)
    parser.add_argument("--ranking-variants", nargs="+", default=list(RANKING_VARIANTS),
                        choices=RANKING_VARIANTS)
    parser.add_argument("--data", default=os.environ.get(DATA_ENV),
                        help=f"Keras' mnist.npz for the MLP (default ${DATA_ENV}; "
                             "none: random images)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the numbers (and run metadata) here")
    parser.add_argument("--child-timeout", type=float, default=None,
                        help="seconds before a backend's child process is stopped")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.mlp_steps, args.warmup = 3, 10, 1
    for name in ("steps", "mlp_steps", "warmup"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if "baseline" not in args.mlp_variants or "baseline" not in args.ranking_variants:
        parser.error("the variants must include baseline (the ratios are to it)")
    if args.data and not os.path.exists(args.data):
        parser.error(f"--data: no such file: {args.data}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        child(args)
        return
    print(f"backends {' '.join(args.backends)}; models {' '.join(args.models)}; jit "
          f"{args.jit}; ranking n={args.n} batch={args.batch} sets, {args.steps} steps; "
          f"MLP {MLP_NAME} batch={args.mlp_batch}, {args.mlp_steps} steps "
          f"({'MNIST from --data' if args.data else 'random images'}); warm-up "
          f"{args.warmup}", flush=True)
    load_start = os.getloadavg()
    metas, records = [], []
    for backend in args.backends:
        print(f"[{backend}] ...", flush=True)
        meta, backend_records = run_backend(args, backend)
        add_ratios(backend_records)
        metas.append(meta)
        records += backend_records
        print(f"\n[{backend}] median per train step, ratio to the baseline "
              f"({meta['seconds']:.0f} s in all)", flush=True)
        print(format_table(backend_records), flush=True)
        print(flush=True)
    load_end = os.getloadavg()
    print("All backends: ratio to the baseline of the same backend, model and jit mode, "
          "median wall / median process CPU time per step")
    print(format_ratio_table(records))
    print()
    print("Paired: median over the rounds of the ratio to the baseline step of the same "
          "round, wall / process CPU time")
    print(format_ratio_table(records, "paired"))
    print(f"load average (1, 5, 15 min) at start {load_start}, at end {load_end}; "
          f"{os.cpu_count()} CPUs")
    if args.json:
        meta = {"argv": sys.argv[1:], "platform": platform.platform(),
                "cpus": os.cpu_count(), "load_start": load_start, "load_end": load_end,
                "data": "mnist" if args.data else "random", "backends": metas}
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"meta": meta, "records": records}, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""Train-step time of the four-digit ranking CNN: baseline vs Newton (Hessian, Fisher).

Issue 3 targets, for DiffSort and NeuralSort at n = 10: a Newton step with the Hessian at
most 1.10x the baseline step, with the Fisher at most 1.03x. All variants are timed in the
same run, interleaved step by step in a shuffled order (so that load from other processes
hits them alike),
and reported as medians and ratios to the baseline of the same relaxation and jit mode.

    python benchmarks/ranking_step_time.py                      # n=10, batch 20 sets
    python benchmarks/ranking_step_time.py --steps 30 --jit both --relaxations diffsort

The data are random images (the step time does not depend on the pixels).
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run from a checkout without installing: the package is one directory up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_newton  # noqa: E402
from keras_newton.losses import RankingLoss  # noqa: E402
from keras_newton.models import multi_digit_cnn  # noqa: E402

RELAXATIONS = {
    "diffsort": lambda: keras_newton.layers.DiffSort("odd_even", 10.0, "cauchy"),
    "diffsort_logistic": lambda: keras_newton.layers.DiffSort("odd_even", 10.0, "logistic"),
    "neuralsort": lambda: keras_newton.layers.NeuralSort(tau=1.0),
    "softsort": lambda: keras_newton.layers.SoftSort(tau=1.0),
}
# "hessian": autodiff curvature (the default); "hessian_cf": RankingLoss(derivatives="auto"),
# the closed-form provider (the inputs here have a static batch size).
VARIANTS = ("baseline", "hessian", "hessian_cf", "fisher")


def make_loss(relaxation, variant, tikhonov=1e-2):
    derivatives = "auto" if variant == "hessian_cf" else "autodiff"
    base = RankingLoss(RELAXATIONS[relaxation](), derivatives=derivatives)
    if variant == "baseline":
        return base
    curvature = "hessian" if variant == "hessian_cf" else variant
    return keras_newton.NewtonLoss(base, curvature=curvature, tikhonov=tikhonov)


def time_loss_only(n=10, batch=20, calls=200, relaxations=("diffsort", "neuralsort"),
                   seed=0):
    """Seconds per call of the loss part alone (traced TF functions): the gradient of the
    base loss w.r.t. the scores vs the Newton target z*; and the first call (trace)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    s = tf.constant(rng.normal(size=(batch, n)).astype(np.float32))
    y = tf.constant(rng.integers(0, 10000, size=(batch, n)).astype(np.float32))
    out = {}
    for relaxation in relaxations:
        for variant in VARIANTS:
            loss = make_loss(relaxation, variant)
            if variant == "baseline":
                def fn(y, s, loss=loss):
                    with tf.GradientTape() as tape:
                        tape.watch(s)
                        value = loss(y, s)
                    return tape.gradient(value, s)
            else:
                fn = loss.target
            fn = tf.function(fn, autograph=False)
            start = time.perf_counter()
            fn(y, s)
            first = time.perf_counter() - start
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                fn(y, s)
                times.append(time.perf_counter() - start)
            out[(relaxation, variant)] = (statistics.median(times), first)
    return out


def build(n, relaxation, variant, jit_compile, seed=0):
    keras.utils.set_random_seed(seed)
    model = multi_digit_cnn(n)
    model.compile(
        optimizer=keras.optimizers.Adam(10**-3.5),
        loss=make_loss(relaxation, variant),
        jit_compile=jit_compile,
    )
    return model


def time_steps(n=10, batch=20, steps=20, warmup=3, relaxations=("diffsort", "neuralsort"),
               jit_modes=(False, True), seed=0):
    """Median seconds per train step, ``{(relaxation, jit, variant): seconds}``, and the
    median process CPU seconds under the key ``(relaxation, jit, variant, "cpu")``."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, n, 28, 112), dtype=np.float32)
    y = rng.integers(0, 10000, size=(batch, n)).astype(np.float32)
    results = {}
    for relaxation in relaxations:
        for jit in jit_modes:
            models = {v: build(n, relaxation, v, jit, seed) for v in VARIANTS}
            for model in models.values():
                for _ in range(warmup):
                    model.train_on_batch(x, y)
            times = {v: [] for v in VARIANTS}
            cpu = {v: [] for v in VARIANTS}
            order = list(VARIANTS)
            for _ in range(steps):
                rng.shuffle(order)  # no variant always runs right after another
                for v in order:
                    model = models[v]
                    start, start_cpu = time.perf_counter(), time.process_time()
                    model.train_on_batch(x, y)
                    times[v].append(time.perf_counter() - start)
                    cpu[v].append(time.process_time() - start_cpu)
            for v in VARIANTS:
                results[(relaxation, jit, v)] = statistics.median(times[v])
                results[(relaxation, jit, v, "cpu")] = statistics.median(cpu[v])
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--batch", type=int, default=20, help="sets per batch")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--relaxations", nargs="+", default=["diffsort", "neuralsort"],
                        choices=sorted(RELAXATIONS))
    parser.add_argument("--jit", choices=["false", "true", "both"], default="both")
    parser.add_argument("--loss-only", action="store_true",
                        help="only time the loss part (fast)")
    args = parser.parse_args(argv)
    if args.loss_only:
        args.relaxations = list(args.relaxations)
        loss_only = time_loss_only(args.n, args.batch, relaxations=args.relaxations)
        for relaxation in args.relaxations:
            print(f"{relaxation:<18}" + "".join(
                f"{v}: {loss_only[(relaxation, v)][0] * 1e3:6.2f}ms "
                f"({loss_only[(relaxation, v)][1]:5.1f}s)   " for v in VARIANTS))
        return
    jit_modes = {"false": (False,), "true": (True,), "both": (False, True)}[args.jit]
    results = time_steps(args.n, args.batch, args.steps, args.warmup, args.relaxations,
                         jit_modes)
    print(f"backend={keras.backend.backend()} n={args.n} batch={args.batch} sets "
          f"steps={args.steps} (median seconds per train step; ratio to baseline)")
    print(f"{'relaxation':<18}{'jit':<7}{'baseline':>10}"
          + "".join(f"{v:>20}" for v in VARIANTS[1:]))
    for relaxation in args.relaxations:
        for jit in jit_modes:
            base = results[(relaxation, jit, "baseline")]
            cells = [f"{base * 1e3:8.1f}ms"]
            for v in VARIANTS[1:]:
                t = results[(relaxation, jit, v)]
                cells.append(f"{t * 1e3:8.1f}ms ({t / base:4.2f}x)")
            print(f"{relaxation:<18}{str(jit):<7}{cells[0]:>10}"
                  + "".join(f"{c:>20}" for c in cells[1:]))
    print("process CPU time per step (all threads; less sensitive to other processes):")
    for relaxation in args.relaxations:
        for jit in jit_modes:
            base = results[(relaxation, jit, "baseline", "cpu")]
            cells = [f"{base * 1e3:8.1f}ms"]
            for v in VARIANTS[1:]:
                t = results[(relaxation, jit, v, "cpu")]
                cells.append(f"{t * 1e3:8.1f}ms ({t / base:4.2f}x)")
            print(f"{relaxation:<18}{str(jit):<7}{cells[0]:>10}"
                  + "".join(f"{c:>20}" for c in cells[1:]))
    print()
    print("loss part alone: median ms per call (first call incl. tracing, s): baseline = "
          "gradient of the base loss, others = Newton target z*")
    loss_only = time_loss_only(args.n, args.batch, relaxations=args.relaxations)
    for relaxation in args.relaxations:
        print(f"{relaxation:<18}" + "".join(
            f"{v}: {loss_only[(relaxation, v)][0] * 1e3:6.2f}ms "
            f"({loss_only[(relaxation, v)][1]:5.1f}s)   " for v in VARIANTS))


if __name__ == "__main__":
    main()

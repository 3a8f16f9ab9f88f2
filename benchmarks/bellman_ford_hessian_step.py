"""Train-step time of the Warcraft shortest-path model: baseline vs Newton (Hessian, Fisher).

The model, batch size and loss are those of ``keras-newton bench shortest-path`` with its CPU
settings for ``--method bf_for_l1`` (CombResNet18 -> 12x12 costs, batch 70, relaxed
Bellman-Ford with 25 sweeps and a For traceback, L1 path loss, Adam, the base-loss metric;
built with `keras_newton.app.shortest_path.make_loss`). Each variant is timed in the same
run, interleaved step by step in a shuffled order (load from other processes hits them
alike); medians and ratios to the baseline of the same jit mode are printed.

``hessian`` is ``NewtonLoss(curvature="hessian")`` with autodiff derivatives: the shared
Hessian ``C`` of ``m = 144`` cost entries as the Hessian of
``phi(delta) = sum_i l_i(y_i + delta)``, i.e. ``m`` Hessian-vector products of the batch loss.
``--per-sample-batch K`` also times, for the loss part alone at batch ``K``, the former path
(per-sample Hessians by ``batch_jacobian``, then their mean; it only runs inside
``tf.function`` since the layer's loops are unrolled) against the shared one.

    python benchmarks/bellman_ford_hessian_step.py                   # graph mode, 3 steps
    python benchmarks/bellman_ford_hessian_step.py --jit both --per-sample-batch 2
    python benchmarks/bellman_ford_hessian_step.py --steps 2 --gradient-batches 70,560,2240

Data: random images and the exact shortest paths of random costs (the step time does not
depend on the values).
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

from keras_newton import NewtonLoss  # noqa: E402
from keras_newton import curvature as curv  # noqa: E402
from keras_newton.app import shortest_path as sp  # noqa: E402
from keras_newton.metrics import BaseLoss  # noqa: E402
from keras_newton.models.paths import comb_resnet18  # noqa: E402
from keras_newton.paths import shortest_path  # noqa: E402

VARIANTS = ("baseline", "fisher", "hessian")


def config():
    return sp.make_config("cpu", method="bf_for_l1")


def data(batch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, 96, 96, 3)).astype(np.float32)
    costs = rng.choice(np.array([0.8, 1.2, 5.3, 7.7, 9.2], np.float32), (batch, 12, 12))
    y = np.asarray(shortest_path(costs)).astype(np.float32)
    return x, costs, y


def build(cfg, variant, jit_compile, seed=0):
    """The model of `keras_newton.app.shortest_path.train_one` for one variant."""
    keras.utils.set_random_seed(seed)
    loss = sp.make_loss(cfg, variant, None, seed)
    base = loss if variant == "baseline" else loss.base_loss
    model = comb_resnet18()
    model.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]), loss=loss,
                  metrics=[BaseLoss(base)], jit_compile=jit_compile)
    return model


def time_steps(cfg, steps, warmup, jit_modes, seed=0, progress=True):
    """``{(jit, variant): (median s, median CPU s, first-step s)}``."""
    x, _, y = data(cfg["batch_size"], seed)
    rng = np.random.default_rng(seed)
    results = {}
    for jit in jit_modes:
        models = {v: build(cfg, v, jit, seed) for v in VARIANTS}
        first = {}
        for v, model in models.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            first[v] = time.perf_counter() - start
            for _ in range(warmup - 1):
                model.train_on_batch(x, y)
            if progress:
                print(f"  jit={jit} {v}: first step (tracing/compiling) {first[v]:.1f} s",
                      flush=True)
        times = {v: [] for v in VARIANTS}
        cpu = {v: [] for v in VARIANTS}
        order = list(VARIANTS)
        for step in range(steps):
            rng.shuffle(order)  # no variant always runs right after another
            for v in order:
                start, start_cpu = time.perf_counter(), time.process_time()
                models[v].train_on_batch(x, y)
                times[v].append(time.perf_counter() - start)
                cpu[v].append(time.process_time() - start_cpu)
            if progress:
                print(f"  jit={jit} round {step + 1}/{steps}: " + ", ".join(
                    f"{v} {times[v][-1]:.2f} s" for v in VARIANTS), flush=True)
        for v in VARIANTS:
            results[(jit, v)] = (statistics.median(times[v]), statistics.median(cpu[v]),
                                 first[v])
    return results


class PerSampleHessianLoss(NewtonLoss):
    """The former ``curvature="hessian"`` path, for comparison: per-sample Hessians
    ``(B, m, m)`` by autodiff (``batch_jacobian``), their mean, then the solve."""

    def _target(self, y_true, y_pred, sample_weight):
        from keras import ops

        y = ops.stop_gradient(y_pred)
        derivs, _ = curv.loss_derivatives(self.base_loss, self._per_sample_fn, y_true, y,
                                          hessian=True)
        step = curv.newton_step(derivs.gradient, derivs.hessian, derivs.diagonal, "hessian",
                                self.tikhonov, self._weights(sample_weight, y))
        return ops.stop_gradient(y - ops.reshape(step, ops.shape(y)))


def time_loss_part(cfg, batch, calls=2, seed=0):
    """Seconds per call of the Newton target alone at ``batch`` maps, in a traced TF
    function: shared path vs per-sample path; first call (tracing) too. ``None`` where the
    path fails (the message instead)."""
    import tensorflow as tf

    _, costs, y = data(batch, seed)
    base = sp.make_loss(cfg, "baseline", None, seed)
    out = {}
    for name, loss in (("shared", NewtonLoss(base, "hessian", cfg["tikhonov"])),
                       ("per_sample", PerSampleHessianLoss(base, "hessian", cfg["tikhonov"]))):
        fn = tf.function(loss.target)
        try:
            start = time.perf_counter()
            z = fn(y, costs).numpy()
            first = time.perf_counter() - start
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                fn(y, costs)
                times.append(time.perf_counter() - start)
            out[name] = (statistics.median(times), first, z)
        except Exception as e:  # noqa: BLE001 - report, do not hide, a failing path
            out[name] = (None, None, f"{type(e).__name__}: {str(e).strip()[:200]}")
    return out


def time_gradient(cfg, batches, jit_compile=False, calls=3, seed=0):
    """Seconds per call of the gradient of the base loss alone (relaxed Bellman-Ford + L1,
    summed over the batch) at each batch size (multiples of the benchmark's batch: its maps
    repeated), in a traced TF function: the unit the ``m`` Hessian-vector products of the
    shared Hessian are made of. Linear growth with the batch means the gradient is
    compute-bound, so vectorising the ``m`` products (one pass over ``m`` copies of the
    batch) cannot make them cheaper than ``m`` gradients."""
    import tensorflow as tf

    base = sp.make_loss(cfg, "baseline", None, seed)
    _, costs, y = data(cfg["batch_size"], seed)
    out = {}
    for batch in batches:
        reps = -(-batch // len(costs))
        c = tf.constant(np.tile(costs, (reps, 1, 1))[:batch])
        t = tf.constant(np.tile(y, (reps, 1, 1))[:batch])

        @tf.function(jit_compile=jit_compile)
        def grad(c, t=t):
            with tf.GradientTape() as tape:
                tape.watch(c)
                value = tf.reduce_sum(base.call(t, c))
            return tape.gradient(value, c)

        grad(c).numpy()
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            grad(c).numpy()
            times.append(time.perf_counter() - start)
        out[batch] = statistics.median(times)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps (>= 1)")
    parser.add_argument("--jit", choices=["false", "true", "both"], default="false",
                        help="jit_compile of the models (the CPU settings: false)")
    parser.add_argument("--per-sample-batch", type=int, default=0,
                        help="also time the former per-sample Hessian path (loss part "
                             "only) at this batch size; 0: skip")
    parser.add_argument("--gradient-batches", default="",
                        help="comma list of batch sizes: also time the gradient of the base "
                             "loss alone at each (graph mode), e.g. 70,560,2240")
    args = parser.parse_args(argv)
    cfg = config()
    jit_modes = {"false": (False,), "true": (True,), "both": (False, True)}[args.jit]
    print(f"bench shortest-path CPU settings, bf_for_l1: batch {cfg['batch_size']}, "
          f"beta {cfg['beta']}, tikhonov {cfg['tikhonov']}, backend "
          f"{keras.backend.backend()}, {os.cpu_count()} CPUs", flush=True)
    results = time_steps(cfg, args.steps, max(args.warmup, 1), jit_modes)
    print()
    print(f"median seconds per train step over {args.steps} interleaved steps "
          "(ratio to the baseline); CPU = process CPU time; first = first step")
    for jit in jit_modes:
        base, base_cpu, _ = results[(jit, "baseline")]
        for v in VARIANTS:
            t, c, first = results[(jit, v)]
            print(f"jit={str(jit):<6}{v:<10}{t:9.2f} s ({t / base:6.2f}x)   CPU "
                  f"{c:8.2f} s ({c / base_cpu:6.2f}x)   first {first:7.1f} s")
    if args.gradient_batches:
        batches = [int(b) for b in args.gradient_batches.split(",")]
        grads = time_gradient(cfg, batches)
        m = 144
        print()
        print("gradient of the base loss alone (tf.function): median s per call")
        for b, t in grads.items():
            print(f"  batch {b:>6}: {t * 1e3:9.1f} ms  ({t * cfg['batch_size'] / b * 1e3:.1f} "
                  f"ms per {cfg['batch_size']} maps)")
        per = grads[batches[0]] * cfg["batch_size"] / batches[0]
        print(f"  m = {m} Hessian-vector products >= {m} gradients at batch "
              f"{cfg['batch_size']}: >= {m * per:.1f} s per step")
    if args.per_sample_batch:
        k = args.per_sample_batch
        print()
        print(f"loss part alone (Newton target z*, tf.function, {k} maps): median s per "
              "call (first call incl. tracing)")
        parts = time_loss_part(cfg, k)
        for name, (t, first, z) in parts.items():
            if t is None:
                print(f"  {name:<11} fails: {z}")
            else:
                print(f"  {name:<11} {t:8.2f} s   (first {first:6.1f} s)")
        shared, per = parts["shared"], parts["per_sample"]
        if shared[0] is not None and per[0] is not None:
            print(f"  per_sample / shared: {per[0] / shared[0]:.2f}x; max |z diff| "
                  f"{np.abs(shared[2] - per[2]).max():.2e}")


if __name__ == "__main__":
    main()

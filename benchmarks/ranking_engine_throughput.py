"""Training throughput of the ranking benchmark's two engines, measured in one run.

- ``keras``: today's step, one run, `model.fit` fed by the host pipeline (`tf.data` on
  TensorFlow, the NumPy `keras.utils.PyDataset` on JAX and PyTorch);
- ``device``, 1 run: the same model and loss, the sets drawn inside the compiled step
  (`keras_newton.datasets.four_digit.FourDigitSampler`);
- ``device``, k runs: k runs side by side in one step (`keras_newton.app.ranking_device`),
  reported per step and per run-step.

Each engine is timed on ``--steps`` training steps after ``--warmup`` steps (compilation),
in ``--rounds`` interleaved rounds; medians of the per-step wall time are printed with the
ratios to the keras engine's. NeuralSort n = 5, the given variant (Newton Hessian by
default), full or bundled MNIST.

    python benchmarks/ranking_engine_throughput.py --data mnist.npz            # TensorFlow
    KERAS_BACKEND=jax python benchmarks/ranking_engine_throughput.py --data mnist.npz
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_newton.app import ranking, ranking_device  # noqa: E402
from keras_newton.datasets import four_digit_datasets, load_mnist  # noqa: E402
from keras_newton.datasets.four_digit import split_mnist  # noqa: E402
from keras_newton.models import multi_digit_cnn  # noqa: E402


def keras_engine(mnist, config, variant):
    keras.utils.set_random_seed(0)
    train, _, _ = four_digit_datasets(mnist, config["n"], batch_size=config["batch_size"],
                                      num_validation_sets=1, num_test_sets=1)
    model = multi_digit_cnn(config["n"])
    loss, _ = ranking.make_loss(config, variant)
    model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]), loss=loss,
                  jit_compile=config["jit_compile"])
    def run(steps):
        model.fit(train, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)

    return run


def device_engine(mnist, config, variant, k):
    runs = [(variant, None, seed) for seed in range(k)]
    model = ranking_device.build_side_by_side(config, runs, split_mnist(mnist)["train"],
                                              ranking.make_loss)
    model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]),
                  jit_compile=config["jit_compile"])

    def run(steps):
        model.fit(np.zeros((steps, 1), np.float32), batch_size=1, epochs=1, shuffle=False,
                  verbose=0)

    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="auto", help="MNIST source (default auto)")
    p.add_argument("--variant", default="hessian", help="baseline, hessian or fisher")
    p.add_argument("--batch-size", type=int, default=10, help="sets per step (default 10)")
    p.add_argument("--runs", type=int, default=9, help="k runs side by side (default 9)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--jit", action="store_true", help="jit_compile=True")
    args = p.parse_args(argv)
    config = ranking.validate_config(ranking.make_config(
        "cpu", batch_size=args.batch_size, jit_compile=args.jit, data=args.data))
    mnist = load_mnist(args.data, verbose=False)
    engines = {"keras, 1 run": (keras_engine(mnist, config, args.variant), 1),
               "device, 1 run": (device_engine(mnist, config, args.variant, 1), 1),
               f"device, {args.runs} runs": (device_engine(mnist, config, args.variant,
                                                           args.runs), args.runs)}
    for run, _ in engines.values():
        run(args.warmup)
    times = {name: [] for name in engines}
    for _ in range(args.rounds):
        for name, (run, _) in engines.items():
            start = time.perf_counter()
            run(args.steps)
            times[name].append((time.perf_counter() - start) / args.steps)
    print(f"backend {keras.backend.backend()}, NeuralSort n={config['n']}, {args.variant}, "
          f"batch {args.batch_size} sets, jit_compile={args.jit}, {args.steps} steps x "
          f"{args.rounds} rounds after {args.warmup} warm-up steps")
    base = statistics.median(times["keras, 1 run"])
    print(f"{'engine':<16} {'ms/step':>9} {'steps/s':>8} {'run-steps/s':>12} "
          f"{'vs keras (run-steps/s)':>23}")
    for name, (_, k) in engines.items():
        t = statistics.median(times[name])
        print(f"{name:<16} {1e3 * t:>9.1f} {1 / t:>8.2f} {k / t:>12.2f} "
              f"{k * base / t:>22.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

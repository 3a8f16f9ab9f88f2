"""
Title: Tuning a Newton loss with KerasTuner
Author: keras-newton developers
Description: Search the curvature kind (or plain training), the Tikhonov lambda and the
learning rate with KerasTuner's hypermodels for the paper's benchmarks.
Accelerator: None (CPU, a few minutes; `--quick`: seconds)

## Introduction

A Newton loss has two settings of its own: the curvature (`"hessian"`,
`"hessian_elementwise"`, `"fisher"`) and the Tikhonov `lambda` of `(C + lambda I)`,
which the paper tunes on a log grid from `1e-3` to `1e3`. `keras_newton.models` has a
KerasTuner `HyperModel` per benchmark (`ClassificationHyperModel`, `RankingHyperModel`,
`ShortestPathHyperModel`) whose search space is: the curvature or the baseline, `lambda`
(log scale, only for Newton curvatures), the relaxation's temperature or steepness, and
the learning rate. Here: MNIST classification (paper Table 4) with random search.
The same searches run from the command line: `keras-newton tune ranking --tuner bayesian`.

Needs `pip install "keras-newton[tune]"` (keras-tuner and tensorboard).

Run: `python examples/tuning.py` (or `--quick`).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_tuner  # noqa: E402

from keras_newton.datasets import load_mnist  # noqa: E402
from keras_newton.models import ClassificationHyperModel  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="two tiny trials")
    parser.add_argument("--max-trials", type=int, default=8)
    parser.add_argument("--out", default="results/examples/tuning")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    (x, y), (x_test, y_test) = load_mnist("bundled" if args.quick else "auto")
    n_train, n_val, epochs, trials = 8000, 2000, 2, args.max_trials
    if args.quick:
        n_train, n_val, epochs, trials = 400, 200, 1, 2
    x_train, y_train = x[:n_train], y[:n_train]
    x_val, y_val = x[n_train:n_train + n_val], y[n_train:n_train + n_val]

    """
    ## The hypermodel

    `ClassificationHyperModel("M1", optimizer="sgd")` builds Table 4's M1 with softmax
    cross-entropy or its Newton loss. Any range can be narrowed or fixed, e.g.
    `tikhonov=(1e-2, 1e2)` or `learning_rate=0.1`.
    """
    hypermodel = ClassificationHyperModel(
        "M1", optimizer="sgd", curvatures=["baseline", "hessian", "fisher"],
        tikhonov=(1e-3, 1e3), learning_rate=(1e-2, 0.5))

    """
    ## The search

    `hypermodel.objective` is the validation accuracy, maximised.
    """
    keras.utils.set_random_seed(0)
    tuner = keras_tuner.RandomSearch(hypermodel, objective=hypermodel.objective,
                                     max_trials=trials, seed=0, directory=args.out,
                                     project_name="classification", overwrite=True)
    tuner.search(x_train, y_train, batch_size=100, epochs=epochs,
                 validation_data=(x_val, y_val), verbose=0)

    """
    ## Results
    """
    for trial in tuner.oracle.get_best_trials(num_trials=trials):
        hp = trial.hyperparameters.values
        tik = f"{hp['tikhonov']:.3g}" if "tikhonov" in hp else "-"
        print(f"trial {trial.trial_id}: val accuracy {trial.score:.4f}  curvature "
              f"{hp['curvature']:<8} tikhonov {tik:>8}  learning rate {hp['learning_rate']:.3g}")
    best = tuner.get_best_models(1)[0]
    result = best.evaluate(x_test, y_test, verbose=0, return_dict=True)
    print(f"best model: test accuracy {100 * result['accuracy']:.2f}%")
    path = os.path.join(args.out, "best_model.keras")
    best.save(path)
    print(f"saved {path}")
    return tuner


if __name__ == "__main__":
    main()

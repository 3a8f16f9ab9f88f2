"""
Title: Learning to rank four-digit numbers with a Newton loss
Author: keras-newton developers
Description: Ranking supervision on four-digit MNIST: a relaxed sort, its loss, and its
Newton loss (paper Table 1).
Accelerator: None (CPU, a few minutes; `--quick`: seconds)

## Introduction

Each training sample is a *set* of `n` images, each showing a four-digit number; the
only supervision is the order of the numbers. A CNN scores every image, a differentiable
sorting relaxation (here NeuralSort, Grover et al., ICLR 2019) turns the `n` scores into
a relaxed permutation matrix `P`, and the loss is the binary cross-entropy between `P`
and the true permutation. That loss is non-convex and badly conditioned in the scores;
its Newton loss (Petersen et al., NeurIPS 2024, Table 1) takes a Newton step on it first.

Run: `python examples/ranking.py` (or `--quick`). The trained Newton ranker is saved to
`--out/ranker.keras`; `examples/serving.py --model` exports it for TF-Serving.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_newton  # noqa: E402
from keras_newton.datasets import four_digit_datasets, load_mnist  # noqa: E402
from keras_newton.metrics import BaseLoss, ElementwiseRankAccuracy  # noqa: E402
from keras_newton.metrics import ExactMatchAccuracy  # noqa: E402
from keras_newton.models import multi_digit_cnn  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="a few steps on tiny data")
    parser.add_argument("--n", type=int, default=5, help="items per set")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--out", default="results/examples/ranking")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    n, steps, batch = args.n, args.steps, 20
    test_sets = 500
    if args.quick:
        n, steps, batch, test_sets = 3, 4, 4, 16

    """
    ## Data

    `four_digit_datasets` splits MNIST 55k/5k/10k (in proportion, for the bundled subset)
    and yields `(x, y)` batches: `x` `(batch, n, 28, 112)` images, `y` `(batch, n)` the
    numbers to be ordered. Training sets are drawn fresh at every step.
    """
    mnist = load_mnist("bundled" if args.quick else "auto")
    train, _, test = four_digit_datasets(mnist, n, batch_size=batch, num_test_sets=test_sets,
                                         num_validation_sets=1, seed=0)

    """
    ## Relaxation, ranking loss and Newton loss

    `RankingLoss(NeuralSort(tau))` is the base loss, one value per set. Its Newton loss
    with the empirical Hessian (`curvature="hessian"`) gets the Hessian of the relaxed
    sort in closed form; `tikhonov` is the `lambda` of `(C + lambda I)`. 0.1 is what the
    benchmark's sweep picked for NeuralSort's Hessian (docs/results.md, "Tikhonov sweep").
    """
    base = keras_newton.losses.RankingLoss(keras_newton.layers.NeuralSort(tau=1.0))
    losses = {
        "baseline": base,
        "newton (hessian)": keras_newton.NewtonLoss(base, curvature="hessian", tikhonov=0.1),
    }

    """
    ## Training and evaluation

    The model predicts one score per item; the predicted order is `argsort(scores)`.
    Exact match: the fraction of test sets ordered entirely right; element-wise: the
    fraction of positions right.
    """
    test_images = test.map(lambda x, y: x)
    test_numbers = np.concatenate([y for _, y in test.as_numpy_iterator()])
    os.makedirs(args.out, exist_ok=True)
    results = {}
    for name, loss in losses.items():
        keras.utils.set_random_seed(0)
        model = multi_digit_cnn(n)
        model.compile(keras.optimizers.Adam(1e-3), loss=loss, metrics=[BaseLoss(base)])
        model.fit(train, steps_per_epoch=steps, epochs=1, verbose=0)
        scores = model.predict(test_images, verbose=0)
        results[name] = {}
        for metric in (ExactMatchAccuracy(), ElementwiseRankAccuracy()):
            metric.update_state(test_numbers, scores)
            results[name][metric.name] = float(metric.result())
        print(f"{name:<18} test exact match {100 * results[name]['exact_match']:6.2f}%  "
              f"element-wise {100 * results[name]['elementwise_accuracy']:6.2f}%")

    """
    ## Saving

    The model saves with its Newton loss and reloads with `keras.saving.load_model`.
    """
    path = os.path.join(args.out, "ranker.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    print(f"saved {path}; reloaded loss: {type(reloaded.loss).__name__}"
          f"(curvature={reloaded.loss.get_config()['curvature']!r})")
    return results


if __name__ == "__main__":
    main()

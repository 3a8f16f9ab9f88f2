"""
Title: Newton losses in Keras: a quickstart
Author: keras-newton developers
Description: Wrap a loss in `NewtonLoss`, train, and compare with ordinary training.
Accelerator: None (CPU, a few minutes; `--quick`: seconds)

## Introduction

A Newton loss (Petersen et al., *Newton Losses*, NeurIPS 2024) splits a training step in
two. First one Newton step on the **loss alone**, in output space:

    z* = y - (C + lambda I)^-1 grad l(y),        y = f(x; theta)

with `C` the Hessian or the empirical Fisher of the loss at `y`; then ordinary gradient
training of the network on the convex `1/2 ||z* - y||^2`, with `z*` held constant. This
example trains the same MNIST classifier with softmax cross-entropy and with its Newton
losses, and shows that `NewtonLoss(curvature="identity")` is exactly ordinary training
(the paper's Theorem 2).

Run: `python examples/quickstart.py` (or `--quick` for a seconds-long smoke run).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_newton import NewtonLoss  # noqa: E402
from keras_newton.datasets import load_mnist  # noqa: E402
from keras_newton.metrics import BaseLoss  # noqa: E402
from keras_newton.models import classification_model  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="tiny data, one epoch")
    parser.add_argument("--epochs", type=int, default=2)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    """
    ## Data

    `load_mnist()` uses full MNIST when it is on this machine (`$KERAS_NEWTON_MNIST` or the
    Keras cache) and otherwise the 10k-digit subset bundled with the package: no network.
    The models take raw 0..255 pixels (they rescale inside).
    """
    (x_train, y_train), (x_test, y_test) = load_mnist("bundled" if args.quick else "auto")
    epochs = args.epochs
    if args.quick:
        x_train, y_train, x_test, y_test = x_train[:512], y_train[:512], x_test[:256], y_test[:256]
        epochs = 1

    """
    ## The loss and its Newton losses

    `base` is the loss we care about. `NewtonLoss(base, curvature, tikhonov)` trains on
    its Newton step; `BaseLoss(base)` reports the base loss as a metric (a Newton loss's
    own value, `1/2 ||z* - y||^2`, says little about progress).
    """
    base = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variants = {
        "baseline": base,
        "identity (= baseline)": NewtonLoss(base, curvature="identity"),
        "hessian": NewtonLoss(base, curvature="hessian", tikhonov=1.0),
        "fisher": NewtonLoss(base, curvature="fisher", tikhonov=1.0),
    }

    """
    ## Training

    Every variant starts from the same weights and sees the same batches.
    """
    results = {}
    for name, loss in variants.items():
        keras.utils.set_random_seed(0)
        model = classification_model("M1")
        metrics = [BaseLoss(base), keras.metrics.SparseCategoricalAccuracy("accuracy")]
        model.compile(keras.optimizers.SGD(0.1), loss=loss, metrics=metrics)
        model.fit(x_train, y_train, batch_size=100, epochs=epochs, shuffle=False, verbose=0)
        results[name] = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
        print(f"{name:<22} test accuracy {100 * results[name]['accuracy']:6.2f}%  "
              f"cross-entropy {results[name]['base_loss']:.4f}")

    """
    ## Theorem 2: the identity curvature is ordinary training

    With `C = I` and no Tikhonov term, `z* = y - grad l(y)` and the Newton loss has the
    same gradient as the base loss, so both runs end with the same weights.
    """
    same = np.isclose(results["baseline"]["base_loss"],
                      results["identity (= baseline)"]["base_loss"], rtol=1e-4, atol=1e-5)
    print(f"identity curvature reproduces the baseline: {bool(same)}")

    """
    ## The Newton step itself

    `NewtonLoss.target(y_true, y_pred)` returns `z*` for a batch.
    """
    logits = model.predict(x_test[:4], verbose=0)
    z = variants["fisher"].target(y_test[:4], logits)
    print("Newton targets z* for 4 test digits (first 3 logits):")
    print(np.round(keras.ops.convert_to_numpy(z)[:, :3], 3))
    return results


if __name__ == "__main__":
    main()

"""
Title: Shortest paths on Warcraft maps with a Fenchel-Young Newton loss
Author: keras-newton developers
Description: Learn terrain costs from map images, supervised only by shortest paths
(paper Table 3: perturbed optimizer + Fenchel-Young loss, with its Hessian).
Accelerator: None (CPU, a few minutes; `--quick`: seconds)

## Introduction

A CNN reads a `96 x 96` map and predicts the `12 x 12` cost of crossing each terrain
tile; the only label is the shortest path from the top-left to the bottom-right corner
(Vlastelica et al., ICLR 2020). The exact solver has no useful gradient, so a perturbed
optimizer (Berthet et al., NeurIPS 2020) replaces it by its expectation under Gaussian
noise, `y_eps(c) = E[path(c + sigma Z)]`, and the Fenchel-Young loss has the gradient
`path* - y_eps(c)`. The same samples estimate its Hessian, so `NewtonLoss(curvature=
"hessian")` can take a Newton step on it (Petersen et al., NeurIPS 2024, Section 4.5).

The real Warcraft maps cannot be redistributed; `generate_warcraft` writes a procedural
look-alike in the same file layout (same terrain costs, same labels). Pass `--data DIR`
for the original files.

Run: `python examples/shortest_paths.py` (or `--quick`).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import keras_newton  # noqa: E402
from keras_newton.datasets import generate_warcraft, load_warcraft  # noqa: E402
from keras_newton.metrics import BaseLoss, path_metrics  # noqa: E402
from keras_newton.models import comb_resnet18  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="a few maps, one epoch")
    parser.add_argument("--data", help="folder with the original Warcraft .npy files")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", default="results/examples/shortest_paths")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    n_train, n_val, n_test, epochs, batch, samples = 600, 100, 200, args.epochs, 35, 10
    grid = 12
    if args.quick:  # small 6x6 maps (48x48 pixels)
        n_train, n_val, n_test, epochs, batch, samples, grid = 8, 4, 8, 1, 8, 3, 6

    """
    ## Data

    `load_warcraft` reads the files and the per-channel mean and standard deviation of the
    training images; we normalise the arrays with them.
    """
    path = args.data
    if path is None:
        path = os.path.join(args.out, f"look_alike_{grid}x{grid}_{n_train}")
        if not os.path.exists(os.path.join(path, "test_shortest_paths.npy")):
            generate_warcraft(path, n_train=n_train, n_val=n_val, n_test=n_test, grid=grid,
                              seed=0)
    data = load_warcraft(path, grid=grid, batch_size=batch, targets="paths")
    train, test = data.arrays["train"], data.arrays["test"]
    x_train = (train["maps"].astype("float32") - data.mean) / data.std
    x_test = (test["maps"].astype("float32") - data.mean) / data.std

    """
    ## Loss

    `FenchelYoungLoss(solver, samples, sigma)` is the base loss; its Newton loss uses the
    sampled Hessian `-d y_eps / d c`. The solver is the exact shortest path of the
    perturbed costs clipped at 0, `nonnegative_shortest_path`: `c + sigma Z` can be
    negative, and the plain `shortest_path` rejects negative costs.
    """
    base = keras_newton.losses.FenchelYoungLoss(
        keras_newton.paths.nonnegative_shortest_path, samples=samples, sigma=0.1, seed=0)
    losses = {
        "baseline": base,
        "newton (hessian)": keras_newton.NewtonLoss(base, curvature="hessian", tikhonov=1.0),
    }

    """
    ## Training and evaluation

    Test metrics solve the exact shortest path on the predicted costs: perfect match (the
    path is the true one), optimal cost (it costs as much as the true one under the true
    costs; paths are often not unique), and the mean cost ratio.
    """
    results = {}
    for name, loss in losses.items():
        keras.utils.set_random_seed(0)
        model = comb_resnet18(grid, input_shape=x_train.shape[1:])
        model.compile(keras.optimizers.Adam(5e-4), loss=loss, metrics=[BaseLoss(base)])
        model.fit(x_train, train["paths"].astype("float32"), batch_size=batch, epochs=epochs,
                  verbose=0)
        pred = model.predict(x_test, verbose=0)
        results[name] = path_metrics(pred, test["weights"], test["paths"])
        r = results[name]
        print(f"{name:<18} perfect match {r['perfect_match']:5.1f}%  optimal cost "
              f"{r['optimal_cost']:5.1f}%  cost ratio {r['cost_ratio']:.4f}")
    return results


if __name__ == "__main__":
    main()

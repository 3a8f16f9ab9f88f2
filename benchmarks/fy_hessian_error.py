"""Error of the Fenchel-Young Hessian estimators, with and without the unperturbed baseline.

`FenchelYoungLoss` estimates the Hessian ``H = -d y_eps / d c`` of the perturbed optimizer
``y_eps(c) = E[w(c + sigma Z)]`` (minimisation) from its ``S`` samples, either plainly
(Berthet et al.) or with the unperturbed solution ``w(c)`` subtracted, a zero-mean control
variate (``E[w(c) Z^T] = 0``):

    none:         -sym(mean_s w(c + sigma Z_s) Z_s^T) / sigma
    unperturbed:  -sym(mean_s (w(c + sigma Z_s) - w(c)) Z_s^T) / sigma

Setup: Warcraft-like 12x12 cost maps, i.i.d. cells from {0.8, 1.2, 5.3, 7.7, 9.2} plus
Gaussian jitter (std ``--jitter``, as a model's output would have; it also breaks the exact
ties of the five levels), solved by `keras_newton.paths.shortest_path` on ``max(c, 0)``
(``keras_newton.paths.shortest_path`` needs non-negative costs; with the cheapest level
0.8 the clamp never acts at sigma 0.1 and sometimes acts at sigma 1.0, where it is part of
the solver whose perturbed optimizer both estimators then estimate).

Reference: per map, the ``unperturbed`` estimator with ``--reference-samples`` samples,
drawn independently of the estimates (``--reference`` picks ``none`` or ``pooled``, the
mean of both estimators on the same samples, instead). Both estimators are unbiased for the
same matrix (tests/test_stochastic.py), so for an independent unbiased reference ``R``,
``E||H_S - R||^2 = E||H_S - H||^2 + E||R - H||^2``: the reference's own noise adds the
same term to both estimators' errors and can only pull the ratio towards 1. The reference
with the smallest variance is the fairest; the default is the lower-variance estimator,
and the reference's own relative noise (from the spread of its ``--reference-chunks``
independent chunks) is printed alongside. 2000 samples rather than 400: the ratios hardly
depend on the reference (``--reference none --reference-samples 400`` and ``--reference
pooled --reference-samples 400`` give the same ratios within 0.5), but the errors are
normalised by ``||R||``, which a noisy reference inflates. The estimates of both kinds
share their noise (same seed: the same ``Z_s``), so the comparison is paired.

Prints, per sigma and ``S``, each estimator's relative Frobenius error
``sqrt(mean_reps ||H_S - R||_F^2) / ||R||_F`` averaged over the maps, and the ratio of
the two estimators' errors (none / unperturbed; > 1: the baseline is more accurate) per
map: the geometric mean over the maps and the range. The ratio varies from map to map (it
is largest where few perturbations move the path), so it is given per map rather than as
a ratio of the averaged errors, which the maps with the smallest Hessians would dominate.
The reference's noise is left in both errors, which makes the ratio conservative; the
averaged errors themselves depend on the reference more (a noisier ``R`` has a larger
norm), so compare them within a run only.

    python benchmarks/fy_hessian_error.py [--maps 8] [--repeats 20] [--samples 3 10 30]
        [--sigmas 0.1 1.0] [--reference-samples 2000] [--reference unperturbed]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_newton.losses import FenchelYoungLoss  # noqa: E402
from keras_newton.paths import shortest_path  # noqa: E402

WARCRAFT_COSTS = np.array([0.8, 1.2, 5.3, 7.7, 9.2])


def solver(costs):
    """Exact shortest path of ``max(costs, 0)``."""
    return shortest_path(ops.relu(costs))


def warcraft_like_costs(maps, grid, jitter, rng):
    return rng.choice(WARCRAFT_COSTS, size=(maps, grid, grid)) + jitter * rng.normal(
        size=(maps, grid, grid))


def hessians(costs, samples, sigma, baseline, seed):
    """The estimator's Hessians ``(B, m, m)`` at each cost map, in float64."""
    loss = FenchelYoungLoss(solver, samples=samples, sigma=sigma, seed=seed,
                            hessian_baseline=baseline, dtype="float64")
    d = loss.loss_derivatives(np.zeros_like(costs), costs, hessian=True)
    return ops.convert_to_numpy(d.hessian)


def reference(costs, args, sigma, seed):
    """Per-map reference Hessians and their relative noise (from independent chunks)."""
    chunks = args.reference_chunks
    per_chunk = -(-args.reference_samples // chunks)
    kinds = {"pooled": ("none", "unperturbed")}.get(args.reference, (args.reference,))
    parts = np.stack([
        np.mean([hessians(costs, per_chunk, sigma, kind, seed + 1000 * k) for kind in kinds],
                axis=0)
        for k in range(chunks)])  # (chunks, maps, m, m)
    ref = parts.mean(0)
    var = np.sum((parts - ref) ** 2, axis=(0, 2, 3)) / (chunks * (chunks - 1))
    return ref, np.sqrt(var) / np.linalg.norm(ref, axis=(1, 2))


def changed_share(costs, sigma, rng, samples=50):
    """Share of perturbed solutions that differ from the unperturbed one."""
    center = np.asarray(solver(costs))
    noisy = costs[:, None] + sigma * rng.normal(size=(len(costs), samples) + costs.shape[1:])
    out = np.asarray(solver(noisy.reshape((-1,) + costs.shape[1:]))).reshape(noisy.shape)
    return np.mean(np.any(out != center[:, None], axis=(2, 3)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--samples", type=int, nargs="+", default=[3, 10, 30])
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--grid", type=int, default=12)
    parser.add_argument("--jitter", type=float, default=0.1)
    parser.add_argument("--reference-samples", type=int, default=2000)
    parser.add_argument("--reference-chunks", type=int, default=4)
    parser.add_argument("--reference", default="unperturbed",
                        choices=["unperturbed", "none", "pooled"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    costs = warcraft_like_costs(args.maps, args.grid, args.jitter, rng)
    batch = np.repeat(costs, args.repeats, axis=0)  # row i is map i // repeats
    print(f"{args.maps} maps {args.grid}x{args.grid}, costs {WARCRAFT_COSTS.tolist()} + "
          f"N(0, {args.jitter}^2) jitter; {args.repeats} repetitions per map; reference: "
          f"'{args.reference}' estimator, {args.reference_samples} samples")
    print(f"{'sigma':>6} {'S':>4} {'err none':>9} {'err unpert.':>11} {'ratio':>6} "
          f"{'(per-map range)':>15}")
    for sigma in args.sigmas:
        ref, ref_noise = reference(costs, args, sigma, args.seed + 1)
        ref_norm = np.linalg.norm(ref, axis=(1, 2))
        for samples in args.samples:
            mse = {}
            for kind in ("none", "unperturbed"):
                est = hessians(batch, samples, sigma, kind, args.seed + 7 + samples)
                est = est.reshape((args.maps, args.repeats) + est.shape[1:])
                mse[kind] = np.mean(np.sum((est - ref[:, None]) ** 2, axis=(2, 3)), axis=1)
            err = {k: np.mean(np.sqrt(v) / ref_norm) for k, v in mse.items()}
            ratios = np.sqrt(mse["none"] / mse["unperturbed"])
            print(f"{sigma:>6g} {samples:>4d} {err['none']:>9.2f} {err['unperturbed']:>11.2f} "
                  f"{np.exp(np.mean(np.log(ratios))):>6.2f} "
                  f"{f'{ratios.min():.2f}-{ratios.max():.2f}':>15}")
        share = changed_share(costs, sigma, rng)
        print(f"{'':>6} reference relative noise {np.mean(ref_noise):.2f}; perturbed paths "
              f"differing from w(c): {share:.0%}")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()

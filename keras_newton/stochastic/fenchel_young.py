"""Perturbed optimizers with a Fenchel-Young loss (Berthet et al. 2020; paper Section 4.5)."""

import keras
from keras import ops

from keras_newton.stochastic import sampling

HESSIAN_BASELINES = ("unperturbed", "none")


@keras.saving.register_keras_serializable(package="keras_newton")
class FenchelYoungLoss(sampling.SampledLoss):
    """Fenchel-Young loss of a perturbed optimizer, with the Hessian from the same samples.

    For a solver ``w(c) = argmin_{w in C} <c, w>`` (minimisation, the default; e.g. the
    shortest path for costs ``c``) and Gaussian perturbations ``Z ~ N(0, I)``:

        y_eps(c) = E[w(c + sigma Z)]                         (perturbed optimizer)
        loss(c)  = <c, w*> - E[min_w <c + sigma Z, w>]      (Fenchel-Young, >= 0)
        grad     = w* - y_eps(c)
        hessian  = -d y_eps / d c                                            (PSD)
                 ~ -sym(mean_s (w(c + sigma Z_s) - w(c)) Z_s^T) / sigma
                                                 (hessian_baseline="unperturbed")
                 ~ -sym(mean_s w(c + sigma Z_s) Z_s^T) / sigma     (hessian_baseline="none")

    With ``maximize=True`` the solver is an argmax and signs flip: ``grad = y_eps - w*``,
    ``hessian = +sym(mean_s (w - w(c)) Z^T) / sigma``. The Hessian is the paper's
    extension to Newton losses (Section 4.5); the Fisher comes from the gradient. Used
    directly, it is a plain Keras loss whose gradient is the estimate; as a `NewtonLoss`
    base it provides both estimates through the provider protocol.

    **Hessian baseline.** By default the unperturbed solution ``w(c)`` is subtracted from
    the perturbed ones in the Hessian estimate. It is a zero-mean control variate
    (``E[w(c) Z^T] = w(c) E[Z]^T = 0``), so both estimators are unbiased for the same
    matrix; with the baseline, samples whose solution does not move contribute nothing
    instead of ``w(c) Z^T / sigma`` noise. Measured on Warcraft-like 12x12 shortest paths
    (``python benchmarks/fy_hessian_error.py``: 8 maps x 20 repetitions against a
    2000-sample reference), the plain estimator's relative Frobenius error is, per map,
    3.3-3.7x (geometric mean; 1.9-12x across maps) that of the baseline one at sigma 0.1,
    where only half of the perturbed paths differ from ``w(c)`` (5.5-9x on a second set of
    maps, ``--seed 1``), and 1.4-1.5x (1.0-2.2x across maps) at sigma 1.0, at S = 3, 10
    and 30 alike. The baseline helps most where few perturbations move the solution; with
    noise so large that the perturbed solutions share little with ``w(c)`` it could cost
    accuracy. The default thus deviates from the plain estimator of Berthet et al. and the
    paper; ``hessian_baseline="none"`` restores it.
    The baseline costs one more solver row per prediction, solved in the same call
    (``B * (S + 1)`` rows), and only when the Hessian is requested: the loss value, the
    gradient and the Fisher are unaffected by this option.

    **Noise at every step.** Every call draws new samples from the loss's
    ``seed_generator`` (a `keras.random.SeedGenerator` seeded with ``seed``): fresh noise
    at every training step on every backend, with ``jit_compile`` on or off (on JAX via a
    ``NoiseState`` metric the loss adds to the model it is compiled into); see the guide,
    "Noise at every step" (docs/guide.md).

    Args:
        solver: ``costs (B, ...) -> solutions (B, ...)`` of the same shape, e.g.
            `keras_newton.paths.nonnegative_shortest_path`. It is called once per
            estimate, on the ``B * samples`` perturbed inputs (``B * (samples + 1)`` with
            the unperturbed ones when the Hessian uses the baseline); it need not be
            differentiable. It must accept every perturbed input: ``c + sigma Z`` can be
            negative even for non-negative ``c``, so for shortest paths use
            `keras_newton.paths.nonnegative_shortest_path` (the shortest path of
            ``max(c, 0)``), not `keras_newton.paths.shortest_path`, which raises on
            negative costs when called eagerly (docs/conventions.md, "Grids and paths").
        samples: perturbations per prediction (Berthet et al. use 3 on Warcraft).
        sigma: noise scale (0.1 on Warcraft).
        maximize: whether the solver maximises ``<theta, w>``.
        seed: seed of the noise stream (``None``: a random one).
        hessian_baseline: ``"unperturbed"`` (default) subtracts ``w(c)`` in the Hessian
            estimate; ``"none"`` is the plain estimator of Berthet et al.

    Example:

    ```python
    fy = FenchelYoungLoss(keras_newton.paths.nonnegative_shortest_path, samples=3,
                          sigma=0.1)
    model.compile("adam", loss=NewtonLoss(fy, curvature="hessian", tikhonov=10.0))
    model.fit(maps, true_paths)   # y_true: the optimal solutions w*
    ```

    References: Q. Berthet, M. Blondel, O. Teboul, M. Cuturi, J.-P. Vert, F. Bach,
    *Learning with Differentiable Perturbed Optimizers*, NeurIPS 2020.
    """

    def __init__(self, solver, samples=3, sigma=0.1, maximize=False, seed=None,
                 hessian_baseline="unperturbed", reduction="sum_over_batch_size",
                 name="fenchel_young_loss", dtype=None):
        super().__init__(samples, sigma, seed, reduction, name, dtype)
        if not callable(solver):
            raise TypeError(f"solver must be callable; received {solver!r}.")
        if hessian_baseline not in HESSIAN_BASELINES:
            raise ValueError(
                f"hessian_baseline must be one of {HESSIAN_BASELINES}; received "
                f"{hessian_baseline!r}.")
        self.solver = solver
        self.maximize = bool(maximize)
        self.hessian_baseline = hessian_baseline

    def _estimate(self, y_true, y_flat, shape, hessian, eps):
        s, sigma, m = self.samples, self.sigma, y_flat.shape[-1]
        eps, points = sampling.perturbed(y_flat, eps, sigma)
        center = hessian and self.hessian_baseline == "unperturbed"
        inputs = ops.reshape(points, (-1, s, m))
        if center:  # one solver call: row b * (S + 1) + S is the unperturbed c_b
            inputs = ops.concatenate([inputs, y_flat[:, None, :]], axis=1)
        solved = self.solver(ops.reshape(inputs, (-1,) + tuple(shape[1:])))
        solved = ops.reshape(ops.cast(solved, y_flat.dtype), (-1, s + int(center), m))
        solutions = solved[:, :s]
        truth = ops.cast(sampling.flatten(y_true), y_flat.dtype)
        perturbed = ops.reshape(points, (-1, s, m))
        optimum = ops.mean(ops.sum(perturbed * solutions, axis=-1), axis=1)
        sign = 1.0 if self.maximize else -1.0
        values = sign * (optimum - ops.sum(y_flat * truth, axis=-1))
        gradient = sign * (ops.mean(solutions, axis=1) - truth)
        hess = None
        if hessian:
            if center:
                solutions = solutions - solved[:, s:]
            jac = ops.einsum("bsi,bsj->bij", solutions, eps) / (s * sigma)
            hess = sign * 0.5 * (jac + ops.swapaxes(jac, 1, 2))
        return values, gradient, hess

    def get_config(self):
        config = super().get_config()
        config.update({
            "solver": keras.saving.serialize_keras_object(self.solver),
            "maximize": self.maximize,
            "hessian_baseline": self.hessian_baseline,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["solver"] = keras.saving.deserialize_keras_object(config["solver"])
        return cls(**config)

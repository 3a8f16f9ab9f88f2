"""Perturbed optimizers with a Fenchel-Young loss (Berthet et al. 2020; paper Section 4.5)."""

import keras
from keras import ops

from keras_newton.stochastic import sampling


@keras.saving.register_keras_serializable(package="keras_newton")
class FenchelYoungLoss(sampling.SampledLoss):
    """Fenchel-Young loss of a perturbed optimizer, with the Hessian from the same samples.

    For a solver ``w(c) = argmin_{w in C} <c, w>`` (minimisation, the default; e.g. the
    shortest path for costs ``c``) and Gaussian perturbations ``Z ~ N(0, I)``:

        y_eps(c) = E[w(c + sigma Z)]                         (perturbed optimizer)
        loss(c)  = <c, w*> - E[min_w <c + sigma Z, w>]      (Fenchel-Young, >= 0)
        grad     = w* - y_eps(c)
        hessian  = -d y_eps / d c ~ -sym(mean_s w(c + sigma Z_s) Z_s^T) / sigma   (PSD)

    With ``maximize=True`` the solver is an argmax and signs flip: ``grad = y_eps - w*``,
    ``hessian = +sym(mean_s w Z^T) / sigma``. The Hessian is the paper's extension to
    Newton losses (Section 4.5); the Fisher comes from the gradient. Used directly, it is a
    plain Keras loss whose gradient is the estimate; as a `NewtonLoss` base it provides
    both estimates through the provider protocol.

    Args:
        solver: ``costs (B, ...) -> solutions (B, ...)`` of the same shape, e.g.
            `keras_newton.paths.shortest_path`. It is called on ``B * samples`` perturbed
            inputs at once; it need not be differentiable.
        samples: perturbations per prediction (Berthet et al. use 3 on Warcraft).
        sigma: noise scale (0.1 on Warcraft).
        maximize: whether the solver maximises ``<theta, w>``.
        seed: seed of the noise stream.

    Example:

    ```python
    fy = FenchelYoungLoss(keras_newton.paths.shortest_path, samples=3, sigma=0.1)
    model.compile("adam", loss=NewtonLoss(fy, curvature="hessian", tikhonov=10.0))
    model.fit(maps, true_paths)   # y_true: the optimal solutions w*
    ```

    References: Q. Berthet, M. Blondel, O. Teboul, M. Cuturi, J.-P. Vert, F. Bach,
    *Learning with Differentiable Perturbed Optimizers*, NeurIPS 2020.
    """

    def __init__(self, solver, samples=3, sigma=0.1, maximize=False, seed=None,
                 reduction="sum_over_batch_size", name="fenchel_young_loss", dtype=None):
        super().__init__(samples, sigma, seed, reduction, name, dtype)
        if not callable(solver):
            raise TypeError(f"solver must be callable; received {solver!r}.")
        self.solver = solver
        self.maximize = bool(maximize)

    def _estimate(self, y_true, y_flat, shape, hessian):
        s, sigma = self.samples, self.sigma
        eps, points = sampling.perturb(y_flat, s, sigma, self.seed_generator)
        solutions = self.solver(ops.reshape(points, (-1,) + tuple(shape[1:])))
        solutions = ops.reshape(ops.cast(solutions, y_flat.dtype), (-1, s, y_flat.shape[-1]))
        truth = ops.cast(sampling.flatten(y_true), y_flat.dtype)
        perturbed = ops.reshape(points, (-1, s, y_flat.shape[-1]))
        optimum = ops.mean(ops.sum(perturbed * solutions, axis=-1), axis=1)
        sign = 1.0 if self.maximize else -1.0
        values = sign * (optimum - ops.sum(y_flat * truth, axis=-1))
        gradient = sign * (ops.mean(solutions, axis=1) - truth)
        hess = None
        if hessian:
            jac = ops.einsum("bsi,bsj->bij", solutions, eps) / (s * sigma)
            hess = sign * 0.5 * (jac + ops.swapaxes(jac, 1, 2))
        return values, gradient, hess

    def get_config(self):
        config = super().get_config()
        config.update({
            "solver": keras.saving.serialize_keras_object(self.solver),
            "maximize": self.maximize,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["solver"] = keras.saving.deserialize_keras_object(config["solver"])
        return cls(**config)

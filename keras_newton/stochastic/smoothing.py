"""Gaussian stochastic smoothing of a loss or of an algorithm (paper Section 4.4, Lemma 4)."""

import keras
from keras import ops

from keras_newton.curvature.autodiff import autodiff_derivatives
from keras_newton.curvature.protocol import resolve_base_loss
from keras_newton.stochastic import sampling


@keras.saving.register_keras_serializable(package="keras_newton")
class StochasticSmoothingLoss(sampling.SampledLoss):
    """Gaussian smoothing of a black-box loss, or of a black-box algorithm inside a loss.

    **Smoothing the loss** (``loss=None``): ``function(y_true, y_pred)`` is a per-sample
    loss that need not be differentiable (say, an exact solver followed by a path
    distance). Its smoothing ``l_eps(y) = E[l(y + sigma eps)]``, ``eps ~ N(0, I)``, has the
    variance-reduced estimators of Lemma 4 (Abernethy et al.; paper Section 4.4):

        grad l_eps(y)    ~ mean_s (l(y + sigma eps_s) - l(y)) eps_s / sigma
        hessian l_eps(y) ~ mean_s (l(y + sigma eps_s) - l(y)) (eps_s eps_s^T - I) / sigma^2

    so `NewtonLoss` can use the Hessian and the Fisher.

    **Smoothing the algorithm** (``loss`` given): ``function(y_pred)`` is an algorithm
    (an exact solver, say) and ``loss(y_true, output)`` a differentiable loss on its
    smoothed output ``a(y) = mean_s function(y + sigma eps_s)``. The Jacobian of the
    smoothed algorithm is estimated as
    ``J ~ mean_s (function(y + sigma eps_s) - function(y)) eps_s^T / sigma`` and the
    gradient is ``J^T d loss / d a``. Only the Fisher is available for `NewtonLoss`
    (the Hessian would need the algorithm's second derivatives; paper Section 5.2).

    Used directly, it is a plain Keras loss whose value is the smoothed estimate and whose
    gradient is the estimate above.

    **Noise at every step.** Every call draws new samples from the loss's
    ``seed_generator`` (a `keras.random.SeedGenerator` seeded with ``seed``): fresh noise
    at every training step on every backend, with ``jit_compile`` on or off (on JAX via a
    ``NoiseState`` metric the loss adds to the model it is compiled into); see the guide,
    "Noise at every step" (docs/guide.md).

    ``function`` is evaluated at the perturbed points ``y + sigma eps``, which can be
    negative even where ``y`` is not: an exact shortest path inside it should be
    `keras_newton.paths.nonnegative_shortest_path` (the shortest path of ``max(c, 0)``),
    as in the example; `keras_newton.paths.shortest_path` raises on negative costs when
    called eagerly (docs/conventions.md, "Grids and paths").

    Args:
        function: the per-sample loss ``(y_true, y_pred) -> (B,)`` (smoothing the loss),
            or the algorithm ``y_pred -> output (B, ...)`` (smoothing the algorithm).
        loss: ``None``, or the differentiable loss applied to the smoothed algorithm output
            (a Keras loss, name or callable; per-sample as in `NewtonLoss`).
        samples: number of samples ``S`` per prediction (the paper uses 3, 10, 30).
        sigma: noise scale.
        seed: seed of the sample stream (``None``: a random one).

    Example:

    ```python
    def path_l1(y_true, costs):              # non-differentiable: exact solver inside
        path = keras_newton.paths.nonnegative_shortest_path(costs)
        return ops.sum(ops.abs(path - y_true), axis=(1, 2))

    smoothed = StochasticSmoothingLoss(path_l1, samples=10, sigma=0.1)
    model.compile("adam", loss=NewtonLoss(smoothed, curvature="hessian", tikhonov=1.0))
    ```
    """

    def __init__(self, function, loss=None, samples=10, sigma=0.1, seed=None,
                 reduction="sum_over_batch_size", name="stochastic_smoothing_loss",
                 dtype=None):
        super().__init__(samples, sigma, seed, reduction, name, dtype)
        if not callable(function):
            raise TypeError(f"function must be callable; received {function!r}.")
        self.function = function
        self.loss = loss
        self._loss_obj, self._loss_per_sample = (
            (None, None) if loss is None else resolve_base_loss(loss))

    @property
    def smooths_algorithm(self):
        return self.loss is not None

    def _estimate(self, y_true, y_flat, shape, hessian, eps):
        """(values (B,), gradient (B, m), hessian (B, m, m) or None)."""
        s, sigma = self.samples, self.sigma
        eps, points = sampling.perturbed(y_flat, eps, sigma)
        point_shape = (-1,) + tuple(shape[1:])
        if not self.smooths_algorithm:
            center = self.function(y_true, ops.reshape(y_flat, point_shape))
            values = self.function(sampling.repeat_rows(y_true, s),
                                   ops.reshape(points, point_shape))
            values = ops.reshape(ops.cast(values, y_flat.dtype), (-1, s))
            delta = values - ops.cast(center, y_flat.dtype)[:, None]
            gradient = ops.einsum("bs,bsm->bm", delta, eps) / (s * sigma)
            hess = None
            if hessian:
                m = y_flat.shape[-1]
                outer = ops.einsum("bs,bsi,bsj->bij", delta, eps, eps) / s
                mean_delta = ops.mean(delta, axis=1)[:, None, None]
                hess = (outer - mean_delta * ops.eye(m, dtype=y_flat.dtype)[None]) / sigma**2
            return ops.mean(values, axis=1), gradient, hess
        if hessian:
            raise ValueError(
                "StochasticSmoothingLoss smoothing an algorithm provides no Hessian "
                "(paper Section 5.2); use NewtonLoss(..., curvature='fisher')."
            )
        center_out = self.function(ops.reshape(y_flat, point_shape))
        center = flatten_out(center_out, y_flat.dtype)
        outputs = flatten_out(self.function(ops.reshape(points, point_shape)), y_flat.dtype)
        k = outputs.shape[-1]
        outputs = ops.reshape(outputs, (-1, s, k))
        smoothed = ops.mean(outputs, axis=1)
        jacobian = ops.einsum("bsk,bsm->bkm", outputs - center[:, None, :], eps) / (s * sigma)
        smoothed_full = ops.reshape(smoothed, ops.shape(center_out))
        values = self._loss_per_sample(y_true, smoothed_full)
        d_loss = autodiff_derivatives(self._loss_per_sample, y_true, smoothed_full,
                                      hessian=False).gradient
        gradient = ops.einsum("bk,bkm->bm", ops.cast(d_loss, y_flat.dtype), jacobian)
        return values, gradient, None

    def get_config(self):
        config = super().get_config()
        config.update({
            "function": keras.saving.serialize_keras_object(self.function),
            "loss": keras.saving.serialize_keras_object(self.loss),
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("function", "loss"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def flatten_out(x, dtype):
    return ops.cast(sampling.flatten(x), dtype)

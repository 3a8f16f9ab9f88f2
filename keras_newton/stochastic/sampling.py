"""Shared pieces of the sampled losses: Gaussian perturbations and estimate-as-gradient.

Both sampled losses perturb a batch of predictions ``y`` ``(B, ...)`` with ``S`` Gaussian
samples each, ``y + sigma * eps``, evaluate a black box on the ``B * S`` perturbed points at
once (sample ``s`` of item ``b`` at row ``b * S + s``), and expose their estimates twice: as
the gradient of a plain Keras loss (`estimate_as_gradient`) and, through the provider
protocol, to `NewtonLoss`.
"""

import math

import keras
from keras import ops

from keras_newton import _checks
from keras_newton.curvature.protocol import LossDerivatives


def flatten(y):
    """``(B, ...)`` -> ``(B, m)``, keeping ``m`` static when the sample shape is."""
    dims = tuple(y.shape[1:])
    m = -1 if any(d is None for d in dims) else int(math.prod(dims))
    return ops.reshape(y, (ops.shape(y)[0], m))


def perturb(y_flat, samples, sigma, seed_generator):
    """Gaussian samples around each row: returns ``(eps (B, S, m), points (B * S, m))``."""
    batch, m = ops.shape(y_flat)[0], y_flat.shape[-1]
    eps = keras.random.normal((batch, samples, m), dtype=y_flat.dtype, seed=seed_generator)
    points = ops.reshape(y_flat[:, None, :] + sigma * eps, (-1, m))
    return eps, points


def repeat_rows(x, samples):
    """Repeats each row of a batch ``samples`` times (row ``b * S + s`` is row ``b``)."""
    return ops.repeat(x, samples, axis=0)


def estimate_as_gradient(value_and_gradient, y_pred):
    """A per-sample loss value whose gradient w.r.t. ``y_pred`` is a given estimate.

    Args:
        value_and_gradient: ``y_flat (B, m) -> (values (B,), gradient (B, m))``.
        y_pred: ``(B, ...)`` predictions.
    """
    @ops.custom_gradient
    def estimated(y_flat):
        values, gradient = value_and_gradient(y_flat)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return upstream[:, None] * gradient

        return values, grad

    return estimated(flatten(y_pred))


class SampledLoss(keras.losses.Loss):
    """Base of the sampled losses: one ``_estimate`` serves training and `NewtonLoss`.

    Subclasses implement ``_estimate(y_true, y_flat, shape, hessian) -> (values (B,),
    gradient (B, m), hessian (B, m, m) or None)`` and keep ``samples``, ``sigma``, ``seed``
    and a ``seed_generator``. ``call`` returns the values with the estimated gradient
    (`estimate_as_gradient`); ``loss_derivatives`` is the provider protocol.
    """

    def __init__(self, samples, sigma, seed, reduction, name, dtype):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.samples = _checks.check_positive_int("samples", samples)
        self.sigma = _checks.check_positive_float("sigma", sigma)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _estimate(self, y_true, y_flat, shape, hessian):
        raise NotImplementedError

    def call(self, y_true, y_pred):
        shape = ops.shape(y_pred)
        return estimate_as_gradient(
            lambda y_flat: self._estimate(y_true, y_flat, shape, hessian=False)[:2], y_pred)

    def loss_derivatives(self, y_true, y_pred, hessian):
        """Provider protocol: the sampled gradient and Hessian estimates."""
        _, gradient, hess = self._estimate(y_true, flatten(y_pred), ops.shape(y_pred), hessian)
        return LossDerivatives(gradient, hess)

    def get_config(self):
        config = super().get_config()
        config.update({"samples": self.samples, "sigma": self.sigma, "seed": self.seed})
        return config

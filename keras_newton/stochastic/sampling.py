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


def check_sampling_args(samples, sigma):
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer; received {samples!r}.")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0 or (
            sigma == float("inf")):
        raise ValueError(f"sigma must be a positive finite number; received {sigma!r}.")
    return int(samples), float(sigma)


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

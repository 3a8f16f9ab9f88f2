"""Swap distributions of differentiable sorting networks (conditional-swap sigmoids).

A soft conditional swap of the pair ``(a, b)`` (Petersen, Borgelt, Kuehne, Deussen,
"Differentiable Sorting Networks for Scalable Sorting and Ranking Supervision", ICML 2021,
and "Monotonic Differentiable Sorting Networks", ICLR 2022) outputs

    soft_min = alpha * a + (1 - alpha) * b,     soft_max = (1 - alpha) * a + alpha * b

with ``alpha = f(b - a)``, the probability that the pair is already in ascending order.
``f`` is a sigmoid (the CDF of a symmetric distribution) scaled by the steepness
``beta``; with ``v = beta (b - a)``:

- ``"logistic"``:      ``sigma(v)`` (ICML 2021).
- ``"logistic_phi"``:  ``sigma(beta (b - a) / (|b - a| + eps)^lambda)``, the activation
  replacement trick (ART) of ICML 2021 with ``lambda = art_lambda``.
- ``"gaussian"``:      ``Phi(v)``, the standard normal CDF.
- ``"reciprocal"``:    ``(v / (2 + |v|) + 1) / 2`` (ICLR 2022, monotonic).
- ``"cauchy"``:        ``atan(v) / pi + 1/2`` (ICLR 2022, monotonic).
- ``"optimal"``:       the optimal monotonic sigmoid of ICLR 2022 (Definition of f_O),
  the sigmoid with the smallest error bound among those giving monotonic sorting
  networks: ``-1 / (16 v)`` for ``v < -1/4``, ``v + 1/2`` for ``|v| <= 1/4`` and
  ``1 - 1 / (16 v)`` for ``v > 1/4``.

All are written in `keras.ops` and work on every Keras backend.
"""

import math

from keras import ops

DISTRIBUTIONS = ("logistic", "logistic_phi", "gaussian", "reciprocal", "cauchy", "optimal")

# ART: the epsilon keeping |b - a|^lambda away from zero (as in the ICML 2021 paper).
_ART_EPS = 1e-10


def check_distribution(distribution):
    """Returns ``distribution`` if it names a swap distribution, else raises ValueError."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"Unknown distribution {distribution!r}: expected one of "
            f"{', '.join(repr(d) for d in DISTRIBUTIONS)}."
        )
    return distribution


def _optimal(v):
    """The optimal monotonic sigmoid f_O of Petersen et al. (ICLR 2022), piecewise."""
    quarter = 0.25
    # Keep the reciprocals finite (and their gradients) where they are not selected.
    v_neg = ops.minimum(v, -quarter)
    v_pos = ops.maximum(v, quarter)
    left = -1.0 / (16.0 * v_neg)
    right = 1.0 - 1.0 / (16.0 * v_pos)
    middle = v + 0.5
    return ops.where(v < -quarter, left, ops.where(v > quarter, right, middle))


def swap_probability(a, b, steepness, distribution="cauchy", art_lambda=0.25):
    """``alpha``: the probability that the pair ``(a, b)`` is in ascending order.

    Args:
        a, b: tensors of the same shape, the upper and lower wire of each comparator.
        steepness: the inverse temperature ``beta > 0``.
        distribution: one of `DISTRIBUTIONS`.
        art_lambda: the exponent ``lambda`` of ``"logistic_phi"`` (ignored otherwise).

    Returns:
        ``alpha`` in ``[0, 1]``, the shape of ``a``.
    """
    check_distribution(distribution)
    diff = b - a
    if distribution == "logistic_phi":
        scale = ops.power(ops.abs(diff) + _ART_EPS, art_lambda)
        return ops.sigmoid(steepness * diff / scale)
    v = steepness * diff
    if distribution == "logistic":
        return ops.sigmoid(v)
    if distribution == "gaussian":
        return 0.5 * (1.0 + ops.erf(v / math.sqrt(2.0)))
    if distribution == "reciprocal":
        return 0.5 * (v / (2.0 + ops.abs(v)) + 1.0)
    if distribution == "cauchy":
        return ops.arctan(v) / math.pi + 0.5
    return _optimal(v)

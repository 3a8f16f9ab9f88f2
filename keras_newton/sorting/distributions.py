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
    return swap_probability_of_difference(b - a, steepness, distribution, art_lambda)


def swap_probability_of_difference(diff, steepness, distribution="cauchy", art_lambda=0.25):
    """``alpha = f(diff)`` for ``diff = b - a``; see `swap_probability`."""
    check_distribution(distribution)
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


def swap_probability_derivatives(diff, steepness, distribution="cauchy", art_lambda=0.25):
    """``(alpha, d alpha / d diff, d2 alpha / d diff2)`` at ``diff = b - a``, in closed form.

    Used by `DiffSort.permutation_derivatives` (forward-mode second derivatives of the
    network); with ``v = steepness * diff`` and ``beta = steepness``:

    - logistic: ``beta s (1 - s)``, ``beta^2 s (1 - s)(1 - 2 s)`` with ``s = sigma(v)``;
    - logistic_phi: ``alpha = sigma(g)``, ``g = beta diff (|diff| + eps)^-lambda``:
      ``s (1 - s) g'`` and ``s (1 - s)(1 - 2 s) g'^2 + s (1 - s) g''``;
    - gaussian: ``beta phi(v)``, ``-beta^2 v phi(v)``;
    - reciprocal: ``beta / (2 + |v|)^2``, ``-2 beta^2 sign(v) / (2 + |v|)^3``;
    - cauchy: ``beta / (pi (1 + v^2))``, ``-2 beta^2 v / (pi (1 + v^2)^2)``;
    - optimal: ``beta``, ``0`` for ``|v| <= 1/4``; else ``beta / (16 v^2)``,
      ``-beta^2 / (8 v^3)``.

    At the kinks (``diff = 0`` for logistic_phi and reciprocal, ``|v| = 1/4`` for optimal)
    the one-sided value that automatic differentiation picks is returned.
    """
    check_distribution(distribution)
    beta = steepness
    if distribution in ("logistic", "logistic_phi"):
        if distribution == "logistic":
            g = beta * diff
            g1 = ops.full_like(diff, beta)
            g2 = ops.zeros_like(diff)
        else:
            u = ops.abs(diff)
            a = u + _ART_EPS
            lam = art_lambda
            g = beta * diff * ops.power(a, -lam)
            g1 = beta * ops.power(a, -lam - 1.0) * (a - lam * u)
            g2 = ops.sign(diff) * beta * lam * ops.power(a, -lam - 2.0) * (
                (lam + 1.0) * u - 2.0 * a)
        s = ops.sigmoid(g)
        ds = s * (1.0 - s)
        return s, ds * g1, ds * (1.0 - 2.0 * s) * ops.square(g1) + ds * g2
    v = beta * diff
    if distribution == "gaussian":
        pdf = ops.exp(-0.5 * ops.square(v)) / math.sqrt(2.0 * math.pi)
        return 0.5 * (1.0 + ops.erf(v / math.sqrt(2.0))), beta * pdf, -beta**2 * v * pdf
    if distribution == "reciprocal":
        d = 2.0 + ops.abs(v)
        return (0.5 * (v / d + 1.0), beta / ops.square(d),
                -2.0 * beta**2 * ops.sign(v) / (d * d * d))
    if distribution == "cauchy":
        q = 1.0 + ops.square(v)
        return (ops.arctan(v) / math.pi + 0.5, beta / (math.pi * q),
                -2.0 * beta**2 * v / (math.pi * ops.square(q)))
    quarter = 0.25
    outside = ops.abs(v) > quarter
    safe = ops.where(outside, v, ops.ones_like(v))
    d1 = ops.where(outside, beta / (16.0 * ops.square(safe)), ops.full_like(v, beta))
    d2 = ops.where(outside, -(beta**2) / (8.0 * safe * safe * safe), ops.zeros_like(v))
    return _optimal(v), d1, d2

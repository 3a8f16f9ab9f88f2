"""The scale of the Tikhonov ``lambda``: per-sample losses (ours) and batch-mean losses.

`keras_newton.NewtonLoss` applies ``lambda`` to the curvature of the *per-sample* loss
``l_i`` (its gradient ``g_i`` and Hessian ``H_i`` do not depend on the batch size ``B``).
Code that differentiates the *batch-mean* loss ``L = 1/B sum_i l_i`` instead sees
``g_i / B`` and ``H_i / B`` for sample ``i``, so the same ``lambda`` means something else:

- Hessian (shared or element-wise): ``(H / B + lambda' I)^-1 g / B = (H + B lambda' I)^-1 g``,
  so a batch-mean ``lambda'`` equals our ``lambda = B lambda'`` (the same ``z*``);
- empirical Fisher: ``(F / B^2 + lambda' I)^-1 g / B = B (F + B^2 lambda' I)^-1 g``, so a
  batch-mean ``lambda'`` gives ``B`` times our step ``y - z*`` at ``lambda = B^2 lambda'``
  (the same direction; the factor ``B`` acts as a learning-rate scale, which Adam ignores
  up to its epsilon and SGD does not).

The Newton-losses paper tunes ``lambda`` over ``1e-3 .. 1e3`` without saying which scale its
(unreleased) code used; `to_per_sample` maps a value given in the batch-mean convention to
ours, and the ``--paper`` presets and ``keras-newton tune`` search the paper's range in that
convention (docs/guide.md, "Which lambda").
"""

from keras_newton import _checks

CONVENTIONS = ("per_sample", "batch_mean")

#: Power of ``B`` relating a batch-mean lambda to ours, per curvature kind.
_POWER = {"hessian": 1, "hessian_elementwise": 1, "fisher": 2}


def to_per_sample(tikhonov, curvature, batch_size, convention="batch_mean"):
    """Our (per-sample) ``lambda`` equivalent to ``tikhonov`` given in ``convention``.

    Args:
        tikhonov: ``lambda >= 0`` in ``convention``.
        curvature: ``"hessian"``, ``"hessian_elementwise"`` or ``"fisher"``.
        batch_size: samples ``B`` per batch (sets, for a ranking loss).
        convention: ``"batch_mean"`` (``tikhonov`` applies to the Hessian/Fisher of the
            batch-mean loss) or ``"per_sample"`` (returned unchanged).

    Returns:
        ``B * tikhonov`` (Hessians) or ``B**2 * tikhonov`` (Fisher) for ``"batch_mean"``.

    Example:

    ```python
    lam = keras_newton.tikhonov.to_per_sample(1e-2, "hessian", batch_size=100)   # 1.0
    loss = keras_newton.NewtonLoss(base, curvature="hessian", tikhonov=lam)
    ```
    """
    tikhonov = _checks.check_non_negative_float("tikhonov", tikhonov)
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}; received {convention!r}.")
    if curvature not in _POWER:
        raise ValueError(f"curvature must be one of {tuple(_POWER)}; received {curvature!r}.")
    batch_size = _checks.check_positive_int("batch_size", batch_size)
    if convention == "per_sample":
        return tikhonov
    return tikhonov * float(batch_size) ** _POWER[curvature]

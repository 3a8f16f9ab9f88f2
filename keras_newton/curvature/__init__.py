"""Where the per-sample gradient and curvature of a base loss come from, and the solve.

Sources, in order of preference (docs/conventions.md):

1. the base loss itself, through the provider protocol (`protocol.py`);
2. a closed form of paper Examples 1-4 for matching Keras losses (`closed_form.py`);
3. automatic differentiation, the one backend-specific seam (`autodiff.py`).

`solve.py` turns them into the Newton step ``(C + lambda I)^+ g_i``.
"""

import math

from keras import ops

from keras_newton.curvature.autodiff import autodiff_derivatives
from keras_newton.curvature.closed_form import closed_form_derivatives
from keras_newton.curvature.protocol import LossDerivatives
from keras_newton.curvature.protocol import is_provider
from keras_newton.curvature.protocol import resolve_base_loss
from keras_newton.curvature.solve import CURVATURES
from keras_newton.curvature.solve import newton_step
from keras_newton.curvature.solve import pinv_apply

__all__ = [
    "CURVATURES",
    "LossDerivatives",
    "autodiff_derivatives",
    "closed_form_derivatives",
    "loss_derivatives",
    "newton_step",
    "pinv_apply",
    "resolve_base_loss",
]


def _sample_size(y_pred):
    """``m``, the static size of one sample of ``y_pred`` (``-1`` if not static)."""
    dims = tuple(y_pred.shape[1:])
    return -1 if any(d is None for d in dims) else int(math.prod(dims))


def loss_derivatives(loss, per_sample_fn, y_true, y_pred, hessian=True):
    """Per-sample derivatives of a base loss from the best available source.

    Args:
        loss: the resolved base loss object (provider, Keras loss or callable).
        per_sample_fn: its per-sample loss ``(y_true, y_pred) -> (B,)``.
        y_true, y_pred: as the loss takes them; ``y_pred`` ``(B, ...)``.
        hessian: whether the Hessian is needed.

    Returns:
        (`LossDerivatives` with ``gradient`` flattened to ``(B, m)``, source name) where the
        source is ``"provider"``, ``"closed_form"`` or ``"autodiff"``.
    """
    y_pred = ops.stop_gradient(y_pred)
    if is_provider(loss):
        d = loss.loss_derivatives(y_true, y_pred, hessian=hessian)
        if not isinstance(d, LossDerivatives):
            d = LossDerivatives(*d)
        if hessian and d.hessian is None:
            raise ValueError(
                f"{type(loss).__name__}.loss_derivatives returned no Hessian although "
                "hessian=True was asked for; use curvature='fisher' with this loss or "
                "return the Hessian."
            )
        grad = ops.reshape(d.gradient, (ops.shape(y_pred)[0], _sample_size(y_pred)))
        return LossDerivatives(grad, d.hessian, d.diagonal), "provider"
    d = closed_form_derivatives(loss, y_true, y_pred, hessian=hessian)
    if d is not None:
        return d, "closed_form"
    return autodiff_derivatives(per_sample_fn, y_true, y_pred, hessian=hessian), "autodiff"

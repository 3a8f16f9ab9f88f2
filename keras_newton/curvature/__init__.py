"""Where the per-sample gradient and curvature of a base loss come from, and the solve.

Sources, in order of preference (docs/conventions.md):

1. the base loss itself, through the provider protocol (`protocol.py`);
2. a closed form of paper Examples 1-4 for matching Keras losses (`closed_form.py`);
3. automatic differentiation, the one backend-specific seam (`autodiff.py`).

`solve.py` turns them into the Newton step ``(C + lambda I)^+ g_i``. When autodiff is the
source and only the shared Hessian (Definition 2) is needed, `loss_derivatives` with
``shared=True`` returns the weighted sum of the per-sample Hessians directly, as the
Hessian of one ``m``-variable function (`autodiff.autodiff_shared_hessian`), and
`shared_hessian_step` solves with it.
"""

from keras import ops

from keras_newton.curvature import autodiff
from keras_newton.curvature.autodiff import autodiff_derivatives
from keras_newton.curvature.autodiff import autodiff_shared_hessian
from keras_newton.curvature.closed_form import closed_form_derivatives
from keras_newton.curvature.protocol import LossDerivatives
from keras_newton.curvature.protocol import is_provider
from keras_newton.curvature.protocol import resolve_base_loss
from keras_newton.curvature.protocol import sample_size
from keras_newton.curvature.solve import CURVATURES
from keras_newton.curvature.solve import newton_step
from keras_newton.curvature.solve import _tiny
from keras_newton.curvature.solve import pinv_apply

__all__ = [
    "CURVATURES",
    "LossDerivatives",
    "autodiff_derivatives",
    "autodiff_shared_hessian",
    "closed_form_derivatives",
    "loss_derivatives",
    "newton_step",
    "pinv_apply",
    "resolve_base_loss",
    "shared_hessian_step",
]


def loss_derivatives(loss, per_sample_fn, y_true, y_pred, hessian=True, shared=False,
                     weights=None):
    """Per-sample derivatives of a base loss from the best available source.

    Args:
        loss: the resolved base loss object (provider, Keras loss or callable).
        per_sample_fn: its per-sample loss ``(y_true, y_pred) -> (B,)``.
        y_true, y_pred: as the loss takes them; ``y_pred`` ``(B, ...)``.
        hessian: whether the Hessian is needed.
        shared: with ``hessian=True``, whether only the weighted sum of the per-sample
            Hessians is needed (``curvature="hessian"``). From autodiff it then comes as
            one ``(m, m)`` matrix, ``sum_i w_i H_i``, with the source ``"autodiff_shared"``;
            providers and closed forms return their per-sample Hessians as always.
        weights: optional ``(B,)`` weights ``w_i`` of that sum (``None``: all 1); used
            with ``shared=True`` only.

    Returns:
        (`LossDerivatives` with ``gradient`` flattened to ``(B, m)``, source name) where the
        source is ``"provider"``, ``"closed_form"``, ``"autodiff"`` or
        ``"autodiff_shared"`` (``hessian`` then holds ``sum_i w_i H_i``, ``(m, m)``).
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
        grad = ops.reshape(d.gradient, (ops.shape(y_pred)[0], sample_size(y_pred)))
        return LossDerivatives(grad, d.hessian, d.diagonal), "provider"
    d = closed_form_derivatives(loss, y_true, y_pred, hessian=hessian)
    if d is not None:
        return d, "closed_form"
    if hessian and shared:
        g, h_sum = autodiff_shared_hessian(per_sample_fn, y_true, y_pred, weights)
        return LossDerivatives(g, h_sum), "autodiff_shared"
    return autodiff_derivatives(per_sample_fn, y_true, y_pred, hessian=hessian), "autodiff"


def shared_hessian_step(gradient, hessian_sum, weights=None, tikhonov=0.0):
    """Row ``i``: ``(C + tikhonov I)^+ g_i`` with ``C = sum_i w_i H_i / sum_i w_i``.

    The solve of `newton_step` for ``curvature="hessian"`` when the weighted sum of the
    per-sample Hessians is given (`autodiff_shared_hessian`) rather than the per-sample
    Hessians: under `tf.distribute` the sum and the weight total are summed across
    replicas, so a mirrored run gets the curvature of the global batch.

    Args:
        gradient: ``(B, m)`` per-sample gradients ``g_i``.
        hessian_sum: ``(m, m)``, ``sum_i w_i H_i`` over this replica's samples.
        weights: optional ``(B,)`` weights ``w_i`` (``None``: all 1).
        tikhonov: ``lambda >= 0``.

    Returns:
        ``(B, m)`` Newton steps, in the dtype of ``gradient``.
    """
    g = gradient
    dtype = g.dtype
    total = ops.cast(hessian_sum, dtype)
    if weights is None:
        count = ops.cast(ops.shape(g)[0], dtype)
    else:
        count = ops.sum(ops.cast(weights, dtype))
    if autodiff.num_replicas() > 1:
        total, count = autodiff.cross_replica_sum([total, count])
    shared = total / ops.maximum(count, _tiny(dtype))
    lam = ops.convert_to_tensor(tikhonov, dtype=dtype)
    shared = shared + lam * ops.eye(g.shape[-1], dtype=dtype)
    return ops.transpose(pinv_apply(shared, ops.transpose(g)))

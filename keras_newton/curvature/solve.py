"""The Newton step ``(C + lambda I)^-1 g_i`` for every curvature kind.

`newton_step` returns the ``(B, m)`` matrix whose row ``i`` is ``(C + lambda I)^+ g_i``,
so that ``z*_i = y_i - step_i``:

- ``"identity"``: ``C = I`` and ``lambda = 0``, the step is ``g_i`` (Theorem 2).
- ``"hessian_elementwise"``: ``C_i = H_i`` (Definition 1), one matrix per sample.
- ``"hessian"``: ``C = sum_i w_i H_i / sum_i w_i`` (Definition 2), shared by the batch.
- ``"fisher"``: ``C = sum_i w_i g_i g_i^T / sum_i w_i`` (Definition 3), shared.

A shared matrix is decomposed once for the whole batch. The weights ``w_i`` are the
``sample_weight`` (1 without). The Fisher uses the Woodbury identity
``(lambda I + G^T G / B)^-1 G^T = G^T (lambda I + G G^T / B)^-1`` when ``m > B`` (unit
weights, one replica, static shapes), which decomposes a ``B x B`` matrix instead.

Singular or indefinite matrices. Matrices are symmetric and decomposed with `eigh`,
``A = V diag(a) V^T``; the step uses the pseudo-inverse
``A^+ = V diag(a^+) V^T`` with ``a^+ = 1 / a`` where ``|a| > rcond * max|a|`` and
``|a| > tiny``, else ``0`` (``rcond = m * eps`` of the compute dtype, as in NumPy's
``lstsq``). So a non-singular matrix gets exactly the paper's step, negative curvature
included, and a direction with no (numerically zero) curvature gets no Newton step at all:
finite inputs always give a finite ``z*``. A matrix with a NaN or infinite entry gives a
NaN step (shared matrices: the whole batch's; per-sample ones: that sample's), never a
failed decomposition. Diagonal Hessians (the closed forms of BCE and
MSE) are solved element-wise with the ``tiny`` guard only.
"""

import keras
import numpy as np
from keras import ops

from keras_newton.curvature import autodiff

CURVATURES = ("hessian", "hessian_elementwise", "fisher", "identity")


def _np_dtype(dtype):
    return np.dtype(keras.backend.standardize_dtype(dtype))


def _tiny(dtype):
    return float(np.sqrt(np.finfo(_np_dtype(dtype)).tiny))


def _reciprocal(a, threshold):
    """``1 / a`` where ``|a| > threshold``, NaN where ``a`` is NaN, else 0, without ever
    dividing by zero."""
    keep = ops.abs(a) > threshold
    safe = ops.where(keep, a, ops.ones_like(a))
    return ops.where(keep, 1.0 / safe, ops.where(ops.isnan(a), a, ops.zeros_like(a)))


def pinv_apply(matrix, rhs):
    """``matrix^+ @ rhs`` for symmetric ``matrix`` ``(..., m, m)``, ``rhs`` ``(..., m, k)``.

    A matrix with a NaN or infinite entry has no pseudo-inverse: its result is NaN (only
    that matrix's, for a batch of matrices) and the decomposition never sees it, so no
    backend's ``eigh`` fails on it (TensorFlow's raises) and the NaN reaches the loss.
    """
    m = matrix.shape[-1]
    dtype = matrix.dtype
    finite = ops.all(ops.all(ops.isfinite(matrix), axis=-1), axis=-1)[..., None, None]
    matrix = ops.where(finite, matrix, ops.zeros_like(matrix))
    matrix = 0.5 * (matrix + ops.swapaxes(matrix, -1, -2))
    eigvals, eigvecs = ops.eigh(matrix)
    scale = ops.max(ops.abs(eigvals), axis=-1, keepdims=True)
    eps = float(np.finfo(_np_dtype(dtype)).eps)
    threshold = ops.maximum(scale * (max(m, 1) * eps), _tiny(dtype))
    inv = _reciprocal(eigvals, threshold)
    proj = ops.matmul(ops.swapaxes(eigvecs, -1, -2), rhs)
    out = ops.matmul(eigvecs, inv[..., :, None] * proj)
    return ops.where(finite, out, ops.full_like(out, float("nan")))


def _weighted_mean(per_sample, weights, distributed):
    """``sum_i w_i X_i / sum_i w_i`` over the batch (and over replicas when distributed)."""
    if weights is None:
        total = ops.sum(per_sample, axis=0)
        count = ops.cast(ops.shape(per_sample)[0], per_sample.dtype)
    else:
        w = ops.reshape(weights, (-1,) + (1,) * (len(per_sample.shape) - 1))
        total = ops.sum(per_sample * w, axis=0)
        count = ops.sum(weights)
    if distributed:
        total, count = autodiff.cross_replica_sum([total, count])
    return total / ops.maximum(count, _tiny(per_sample.dtype))


def newton_step(gradient, hessian=None, diagonal=False, curvature="hessian",
                tikhonov=0.0, weights=None):
    """Row ``i``: ``(C + tikhonov I)^+ g_i`` for the given curvature kind.

    Args:
        gradient: ``(B, m)`` per-sample gradients ``g_i``.
        hessian: per-sample Hessians ``(B, m, m)``, or diagonals ``(B, m)`` with
            ``diagonal=True``; needed for the Hessian kinds only.
        diagonal: whether ``hessian`` holds diagonals.
        curvature: one of `CURVATURES`.
        tikhonov: ``lambda >= 0``.
        weights: optional ``(B,)`` sample weights for the shared means.

    Returns:
        ``(B, m)`` Newton steps, in the dtype of ``gradient``.
    """
    g = gradient
    dtype = g.dtype
    lam = ops.convert_to_tensor(tikhonov, dtype=dtype)
    if curvature == "identity":
        return g
    m = g.shape[-1]
    distributed = autodiff.num_replicas() > 1

    if curvature == "fisher":
        batch = g.shape[0]
        if (weights is None and not distributed and batch is not None and m is not None
                and m > batch):
            gram = ops.matmul(g, ops.transpose(g)) / float(batch)
            gram = gram + lam * ops.eye(batch, dtype=dtype)
            return pinv_apply(gram, g)
        outer = g[:, :, None] * g[:, None, :]
        shared = _weighted_mean(outer, weights, distributed)
        shared = shared + lam * ops.eye(m, dtype=dtype)
        return ops.transpose(pinv_apply(shared, ops.transpose(g)))

    if hessian is None:
        raise ValueError(f"curvature={curvature!r} needs the per-sample Hessians.")

    if curvature == "hessian_elementwise":
        if diagonal:
            return g * _reciprocal(hessian + lam, _tiny(dtype))
        per_sample = hessian + lam * ops.eye(m, dtype=dtype)[None]
        return pinv_apply(per_sample, g[:, :, None])[:, :, 0]

    if curvature == "hessian":
        shared = _weighted_mean(hessian, weights, distributed)
        if diagonal:
            return g * _reciprocal(shared + lam, _tiny(dtype))[None, :]
        shared = shared + lam * ops.eye(m, dtype=dtype)
        return ops.transpose(pinv_apply(shared, ops.transpose(g)))

    raise ValueError(
        f"Unknown curvature {curvature!r}; expected one of {', '.join(CURVATURES)}."
    )

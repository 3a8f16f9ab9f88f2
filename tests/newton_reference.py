"""Float64 NumPy reference of the Newton target z*, from finite differences."""

import numpy as np

from conftest import fd_gradient, fd_hessian


def per_sample_derivatives(loss_i, y_true, y_pred):
    """Finite-difference ``g_i`` ``(B, m)`` and ``H_i`` ``(B, m, m)`` of ``loss_i(t_i, y_i)``."""
    y = np.asarray(y_pred, np.float64).reshape(len(y_pred), -1)
    shape = np.shape(y_pred)[1:]
    grads, hessians = [], []
    for i in range(len(y)):
        f = lambda v, i=i: loss_i(y_true[i], v.reshape(shape))  # noqa: E731
        grads.append(fd_gradient(f, y[i]))
        hessians.append(fd_hessian(f, y[i]))
    return np.stack(grads), np.stack(hessians)


def reference_target(loss_i, y_true, y_pred, curvature, tikhonov, weights=None):
    """z* of docs/conventions.md / paper Definitions 1-3 in float64, shape of ``y_pred``."""
    y = np.asarray(y_pred, np.float64).reshape(len(y_pred), -1)
    g, h = per_sample_derivatives(loss_i, y_true, y_pred)
    m = y.shape[1]
    w = np.ones(len(y)) if weights is None else np.asarray(weights, np.float64)
    eye = np.eye(m)
    if curvature == "identity":
        step = g
    elif curvature == "hessian_elementwise":
        step = np.stack([np.linalg.solve(h[i] + tikhonov * eye, g[i]) for i in range(len(y))])
    elif curvature == "hessian":
        c = np.einsum("b,bij->ij", w, h) / w.sum()
        step = np.linalg.solve(c + tikhonov * eye, g.T).T
    elif curvature == "fisher":
        c = np.einsum("b,bi,bj->ij", w, g, g) / w.sum()
        step = np.linalg.solve(c + tikhonov * eye, g.T).T
    else:
        raise ValueError(curvature)
    return (y - step).reshape(np.shape(y_pred))

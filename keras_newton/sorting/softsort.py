"""`SoftSort`: the relaxed sort of Prillo & Eisenschlos (ICML 2020)."""

import keras
from keras import ops

from keras_newton import _checks
from keras_newton.sorting.permutation import SortingRelaxation
from keras_newton.sorting.permutation import one_hot
from keras_newton.sorting.permutation import softmax_derivatives


@keras.saving.register_keras_serializable(package="keras_newton")
class SoftSort(SortingRelaxation):
    """SoftSort relaxation of the sorting permutation (Prillo & Eisenschlos, ICML 2020).

    With ``d(x, y) = |x - y|^power`` SoftSort is

        SoftSort(s) = softmax(-d(sort(s) 1^T, 1 s^T) / tau)        (row-wise softmax)

    The paper sorts in decreasing order; this layer returns keras-newton's orientation
    (docs/conventions.md), rows = *ascending* ranks (the paper's rows reversed):

        P[r, j] = softmax_j(-|sort_asc(s)_r - s_j|^power / tau)

    Every row sums to 1 and as ``tau -> 0`` (distinct scores) ``P`` tends to
    ``one_hot(argsort(s))``. The sorted values are gathered by ``argsort``, so the
    derivatives are those of the paper's formula with the permutation held fixed.

    Args:
        tau: temperature ``tau > 0`` (the paper: 1024 for ``n <= 7``, 128 for larger ``n``
            on four-digit MNIST, with its own score scale).
        power: exponent ``power > 0`` of the distance (1 in the paper).
        **kwargs: `keras.layers.Layer` arguments.

    Input: scores ``(B, n)``, ``n >= 2``. Output: ``(B, n, n)``.

    Example:

    ```python
    loss = keras_newton.losses.RankingLoss(keras_newton.layers.SoftSort(tau=1.0))
    model.compile("adam", loss=keras_newton.NewtonLoss(loss, curvature="hessian"))
    ```
    """

    def __init__(self, tau=1.0, power=1.0, **kwargs):
        super().__init__(**kwargs)
        self.tau = _checks.check_positive_float("tau", tau)
        self.power = _checks.check_positive_float("power", power)

    def relaxed_permutation(self, scores):
        s = ops.convert_to_tensor(scores)
        sorted_s = ops.take_along_axis(s, ops.argsort(s, axis=-1), axis=-1)
        dist = ops.abs(sorted_s[:, :, None] - s[:, None, :])  # (B, rank, item)
        if self.power != 1.0:
            # |x|^p with finite derivatives at x = 0 (the diagonal of each sort) for p < 1.
            positive = dist > 0
            safe = ops.where(positive, dist, ops.ones_like(dist))
            dist = ops.where(positive, ops.power(safe, self.power), ops.zeros_like(dist))
        return ops.softmax(-dist / self.tau, axis=-1)

    def permutation_derivatives(self, scores, hessian=True):
        """``(P, dP/ds, weighted d2P/ds2)`` in closed form (see `SortingRelaxation`).

        With ``pi = argsort(s)`` (held fixed, as in automatic differentiation),
        ``d[r, j] = s_pi(r) - s_j`` and ``E[r, j] = e_pi(r) - e_j``, the logits
        ``L = -|d|^p / tau`` have ``dL/ds = -p |d|^(p-1) sign(d) E / tau`` and
        ``d2L/ds2 = -p (p - 1) |d|^(p-2) E E^T / tau`` (both 0 where ``d = 0``).
        """
        s = ops.convert_to_tensor(scores)
        p = self.relaxed_permutation(s)
        n = s.shape[-1]
        order = ops.argsort(s, axis=-1)
        sorted_s = ops.take_along_axis(s, order, axis=-1)
        d = sorted_s[:, :, None] - s[:, None, :]  # (B, r, j)
        eye = ops.eye(n, dtype=s.dtype)
        e = one_hot(order, n, dtype=s.dtype)[:, :, None, :] - eye[None, None]  # (B,r,j,m)
        nonzero = ops.not_equal(d, 0.0)
        safe = ops.where(nonzero, ops.abs(d), ops.ones_like(d))
        power = self.power
        first = -power * ops.power(safe, power - 1.0) * ops.sign(d) / self.tau
        first = ops.where(nonzero, first, ops.zeros_like(d))
        jac_logits = first[..., None] * e
        second = None
        if hessian and power != 1.0:
            second = -power * (power - 1.0) * ops.power(safe, power - 2.0) / self.tau
            second = ops.where(nonzero, second, ops.zeros_like(d))
        jac, hess_fn = softmax_derivatives(p, jac_logits, second,
                                           None if second is None else e, hessian)
        return p, jac, hess_fn

    def get_config(self):
        config = super().get_config()
        config.update({"tau": self.tau, "power": self.power})
        return config

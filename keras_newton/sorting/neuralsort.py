"""`NeuralSort`: the relaxed sort of Grover, Wang, Zweig, Ermon (ICLR 2019)."""

import keras
from keras import ops

from keras_newton import _checks
from keras_newton.sorting.permutation import SortingRelaxation
from keras_newton.sorting.permutation import softmax_derivatives


@keras.saving.register_keras_serializable(package="keras_newton")
class NeuralSort(SortingRelaxation):
    """NeuralSort relaxation of the sorting permutation (Grover et al., ICLR 2019, Thm. 4).

    For scores ``s`` ``(n,)`` and ``A_ij = |s_i - s_j|``, NeuralSort's row ``i``
    (1-based, descending order) is

        P_desc[i, :] = softmax(((n + 1 - 2 i) s - A 1) / tau)

    This layer returns keras-newton's orientation (docs/conventions.md), rows =
    *ascending* ranks ``r = 0 .. n-1``, i.e. NeuralSort's rows reversed:

        P[r, :] = softmax(((2 r + 1 - n) s - A 1) / tau)

    ``P @ s`` is the soft-sorted ``s`` (ascending); every row sums to 1 and as
    ``tau -> 0`` (distinct scores) ``P`` tends to the hard permutation
    ``one_hot(argsort(s))``.

    Args:
        tau: temperature ``tau > 0`` (Grover et al. use 1 to 16).
        **kwargs: `keras.layers.Layer` arguments (``name``, ``dtype``, ...).

    Input: scores ``(B, n)``, ``n >= 2``. Output: ``(B, n, n)``.

    Example:

    ```python
    scores = model(x)                                   # (B, n)
    loss = keras_newton.losses.RankingLoss(keras_newton.layers.NeuralSort(tau=1.0))
    model.compile("adam", loss=keras_newton.NewtonLoss(loss, curvature="hessian"))
    ```
    """

    def __init__(self, tau=1.0, **kwargs):
        super().__init__(**kwargs)
        self.tau = _checks.check_positive_float("tau", tau)

    def relaxed_permutation(self, scores):
        s = ops.convert_to_tensor(scores)
        n = ops.shape(s)[-1]
        # A 1: row sums of the pairwise absolute differences, (B, n).
        a_sum = ops.sum(ops.abs(s[:, :, None] - s[:, None, :]), axis=-1)
        coeff = ops.cast(2 * ops.arange(n) + 1 - n, s.dtype)  # (n,) over ascending ranks
        logits = (coeff[None, :, None] * s[:, None, :] - a_sum[:, None, :]) / self.tau
        return ops.softmax(logits, axis=-1)

    def permutation_derivatives(self, scores, hessian=True):
        """``(P, dP/ds, weighted d2P/ds2)`` in closed form (see `SortingRelaxation`).

        The logits ``L[r, j] = (c_r s_j - sum_k |s_j - s_k|) / tau``, ``c_r = 2r + 1 - n``,
        are piecewise linear in ``s``: ``dL[r, j]/ds_m = ((c_r - S_j) [j = m] +
        sign(s_j - s_m)) / tau`` with ``S_j = sum_k sign(s_j - s_k)``, and ``d2L = 0``.
        """
        s = ops.convert_to_tensor(scores)
        p = self.relaxed_permutation(s)
        n = s.shape[-1]
        sign = ops.sign(s[:, :, None] - s[:, None, :])  # (B, j, m)
        coeff = ops.cast(2 * ops.arange(n) + 1 - n, s.dtype)
        eye = ops.eye(n, dtype=s.dtype)
        diag = coeff[None, :, None] - ops.sum(sign, axis=-1)[:, None, :]  # (B, r, j)
        jac_logits = (diag[..., None] * eye[None, None] + sign[:, None]) / self.tau
        jac, hess_fn = softmax_derivatives(p, jac_logits, hessian=hessian)
        return p, jac, hess_fn

    def get_config(self):
        config = super().get_config()
        config.update({"tau": self.tau})
        return config

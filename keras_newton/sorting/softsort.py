"""`SoftSort`: the relaxed sort of Prillo & Eisenschlos (ICML 2020)."""

import keras
from keras import ops

from keras_newton.sorting.permutation import SortingRelaxation
from keras_newton.sorting.permutation import check_positive


@keras.saving.register_keras_serializable(package="keras_newton")
class SoftSort(SortingRelaxation):
    """SoftSort relaxation of the sorting permutation (Prillo & Eisenschlos, ICML 2020).

    With ``d(x, y) = |x - y|^power`` SoftSort is

        SoftSort(s) = softmax(-d(sort(s) 1^T, 1 s^T) / tau)        (row-wise softmax)

    The paper sorts in decreasing order; this layer returns the DESIGN.md orientation,
    rows = *ascending* ranks (the paper's rows reversed):

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
        self.tau = check_positive("tau", tau)
        self.power = check_positive("power", power)

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

    def get_config(self):
        config = super().get_config()
        config.update({"tau": self.tau, "power": self.power})
        return config

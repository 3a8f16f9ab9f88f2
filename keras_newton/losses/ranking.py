"""`RankingLoss`: binary cross-entropy between a relaxed and the true permutation."""

import keras
from keras import ops

from keras_newton.curvature import LossDerivatives
from keras_newton.curvature import autodiff_derivatives
from keras_newton.sorting.permutation import SortingRelaxation
from keras_newton.sorting.permutation import permutation_matrix


@keras.saving.register_keras_serializable(package="keras_newton")
class RankingLoss(keras.losses.Loss):
    """Ranking supervision loss: per-set BCE between ``P(scores)`` and the true permutation.

    For scores ``s`` ``(B, n)`` and ground-truth values ``y_true`` ``(B, n)`` (the values to
    be ordered, e.g. the four-digit numbers), with ``P = relaxation(s)`` ``(B, n, n)`` and
    ``Q = one_hot(argsort(y_true))`` (rows = ascending ranks, ties in index order; DESIGN.md):

        l_b = 1 / n^2 sum_{r, i} -[Q_bri log p_bri + (1 - Q_bri) log(1 - p_bri)],
        p = clip(P, eps, 1 - eps)

    the loss of the diffsort experiments (Petersen et al., ICML 2021; PyTorch ``BCELoss``,
    which averages over the ``n x n`` entries), on which the Newton-loss paper's ranking
    benchmark builds. The mean rather than the sum keeps the loss, and so its Hessian
    against the Tikhonov ``lambda`` of a `keras_newton.NewtonLoss`, on the scale of that
    setup at every ``n``; for a sum over the entries multiply ``lambda`` by ``n^2``.
    ``eps`` is ``keras.config.epsilon()``: the clip keeps the loss finite where ``P``
    saturates (there its derivatives are zero, as for Keras' BCE).

    ``call`` returns the per-set losses ``(B,)``: one set is one sample of a
    `keras_newton.NewtonLoss`, so this loss is a valid base for every curvature kind
    (``y_pred`` of the Newton loss is the ``(B, n)`` score matrix).

    The relaxation is evaluated through its ``relaxed_permutation`` in the dtype of
    ``y_pred`` (float64 scores give a float64 loss).

    Derivatives for `NewtonLoss` (the ``loss_derivatives`` provider protocol, with
    ``derivatives="auto"`` or ``"closed_form"``): with
    ``J = dP/ds`` and the weighted second derivative ``<w, d2P/ds2>`` from the
    relaxation's closed-form ``permutation_derivatives`` (no automatic differentiation:
    the step traces 3-5x faster, and the same code runs on every backend),

        g = sum_ri l'(p_ri) J_ri,    H = sum_ri l''(p_ri) J_ri J_ri^T + <l'(P), d2P/ds2>

    with ``l'(p) = ((1 - q)/(1 - p) - q/p) / n^2`` and ``l''(p) = (q/p^2 +
    (1 - q)/(1 - p)^2) / n^2`` where ``eps < P < 1 - eps`` (0 where the clip is active).
    They cost ``O(B n^4)`` work per network layer, so ``derivatives="auto"`` uses them for
    the Hessian up to ``n = 16`` (`CLOSED_FORM_MAX_N`), and automatic differentiation
    (one reverse pass) when only the gradient is needed (``"fisher"``, ``"identity"``) or
    ``n`` is larger.

    Args:
        relaxation: a sorting relaxation layer (`keras_newton.layers.NeuralSort`,
            `SoftSort` or `DiffSort`).
        derivatives: ``"auto"`` (default), ``"closed_form"`` or ``"autodiff"``: where
            `NewtonLoss` takes the gradient and Hessian from. With ``"auto"`` and
            ``"closed_form"`` the loss is a curvature provider (it has
            ``loss_derivatives``); ``"autodiff"`` leaves them to `NewtonLoss`'s automatic
            differentiation (same values, slower to trace).
        reduction: Keras reduction over the batch of sets.
        name: loss name.
        dtype: loss dtype.

    Example:

    ```python
    model = keras_newton.models.multi_digit_cnn(5)
    base = keras_newton.losses.RankingLoss(keras_newton.layers.DiffSort(steepness=10.0))
    model.compile("adam", loss=keras_newton.NewtonLoss(base, curvature="hessian"),
                  metrics=[keras_newton.metrics.ExactMatchAccuracy()])
    ```
    """

    #: Largest ``n`` for which ``derivatives="auto"`` uses the closed form.
    CLOSED_FORM_MAX_N = 16

    def __init__(self, relaxation, derivatives="auto", reduction="sum_over_batch_size",
                 name="ranking_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if derivatives not in ("auto", "closed_form", "autodiff"):
            raise ValueError(
                f"Unknown derivatives {derivatives!r}: expected 'auto', 'closed_form' or "
                "'autodiff'."
            )
        self.derivatives = derivatives
        if derivatives != "autodiff":
            # Only these instances are curvature providers (see `_provided_derivatives`).
            self.loss_derivatives = self._provided_derivatives
        if not isinstance(relaxation, SortingRelaxation):
            raise TypeError(
                "relaxation must be a sorting relaxation layer (keras_newton.layers."
                f"NeuralSort, SoftSort or DiffSort); received {type(relaxation).__name__}."
            )
        self.relaxation = relaxation

    def call(self, y_true, y_pred):
        """Per-set losses ``(B,)``."""
        s = ops.convert_to_tensor(y_pred)
        self.relaxation._check_shape(tuple(s.shape))
        y_true = self._check_y_true(y_true, s)
        p = self.relaxation.relaxed_permutation(s)
        q = ops.stop_gradient(permutation_matrix(y_true, dtype=p.dtype))
        eps = keras.config.epsilon()
        p = ops.clip(p, eps, 1.0 - eps)
        bce = -(q * ops.log(p) + (1.0 - q) * ops.log(1.0 - p))
        return ops.mean(bce, axis=(1, 2))

    def _check_y_true(self, y_true, s):
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) != 2:
            raise ValueError(
                f"y_true must hold the values to be ordered, shape (batch, n); received "
                f"shape {tuple(y_true.shape)} for scores of shape {tuple(s.shape)}."
            )
        return y_true

    def uses_closed_form(self, n, hessian=True):
        """Whether `loss_derivatives` uses the closed form for sets of ``n`` items."""
        if self.derivatives == "autodiff" or self.relaxation.permutation_derivatives is None:
            return False
        if self.derivatives == "closed_form":
            return True
        return hessian and n is not None and n <= self.CLOSED_FORM_MAX_N

    def _provided_derivatives(self, y_true, y_pred, hessian=True):
        """Per-set gradient ``(B, n)`` and Hessian ``(B, n, n)`` for `NewtonLoss`.

        The ``loss_derivatives`` method of the provider protocol of
        `keras_newton.curvature.protocol` (set on instances with ``derivatives`` other
        than ``"autodiff"``): closed form (see the class docstring) or automatic
        differentiation, per `uses_closed_form`.
        """
        s = ops.convert_to_tensor(y_pred)
        self.relaxation._check_shape(tuple(s.shape))
        if not self.uses_closed_form(s.shape[-1], hessian):
            return autodiff_derivatives(self.call, y_true, s, hessian=hessian)
        y_true = self._check_y_true(y_true, s)
        p, jac, hess_fn = self.relaxation.permutation_derivatives(s, hessian=hessian)
        q = permutation_matrix(y_true, dtype=p.dtype)
        eps = keras.config.epsilon()
        inside = ops.cast(ops.logical_and(p > eps, p < 1.0 - eps), p.dtype)
        pc = ops.clip(p, eps, 1.0 - eps)
        scale = 1.0 / float(s.shape[-1] ** 2)
        d1 = inside * ((1.0 - q) / (1.0 - pc) - q / pc) * scale
        grad = ops.einsum("bri,brim->bm", d1, jac)
        if not hessian:
            return LossDerivatives(grad, None)
        d2 = inside * (q / ops.square(pc) + (1.0 - q) / ops.square(1.0 - pc)) * scale
        h = ops.einsum("bri,brim,briq->bmq", d2, jac, jac) + hess_fn(d1)
        return LossDerivatives(grad, 0.5 * (h + ops.swapaxes(h, -1, -2)))

    def get_config(self):
        config = super().get_config()
        config["relaxation"] = keras.saving.serialize_keras_object(self.relaxation)
        config["derivatives"] = self.derivatives
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["relaxation"] = keras.saving.deserialize_keras_object(config["relaxation"])
        return cls(**config)

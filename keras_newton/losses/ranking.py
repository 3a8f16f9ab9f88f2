"""`RankingLoss`: binary cross-entropy between a relaxed and the true permutation."""

import keras
from keras import ops

from keras_newton.curvature import LossDerivatives
from keras_newton.curvature import autodiff_derivatives
from keras_newton.sorting.permutation import SortingRelaxation
from keras_newton.sorting.permutation import permutation_matrix


#: PyTorch's ``BCELoss`` constants: the floor of its logarithms, the epsilon of its
#: backward (``max(p (1 - p), eps)``; ATen's ``float`` constant ``1e-12``, so
#: ``float32(1e-12)`` in float64 too) and of its double backward (``p + 1e-12``, a double).
_LOG_FLOOR = -100.0
_BACKWARD_EPSILON = 9.999999960041972e-13
_DOUBLE_BACKWARD_EPSILON = 1e-12


def _floored(log_fn, x, valid):
    """``max(log_fn(x), -100)`` where ``valid``, else ``-100`` (no ``-inf`` or NaN)."""
    log = log_fn(ops.where(valid, x, ops.full_like(x, 0.5)))
    return ops.where(valid, ops.maximum(log, _LOG_FLOOR), ops.full_like(x, _LOG_FLOOR))


def _bce_value(p, q):
    """PyTorch ``BCELoss`` per entry: ``-(q max(log p, -100) + (1 - q) max(log(1 - p), -100))``.

    ``log(1 - p)`` as ATen computes it, ``log1p(-p)``.
    """
    log_p = _floored(ops.log, p, p > 0)
    log_1mp = _floored(ops.log1p, -p, p < 1)
    return -(q * log_p + (1.0 - q) * log_1mp)


def _bce_derivatives(p, q, second=True):
    """First and second derivatives in ``p`` of `_bce_value` as PyTorch defines them.

    ``(p - q) / max(p (1 - p), 1e-12)`` (``BCELoss`` backward) and
    ``(p^2 - 2 p q + q) / ((p + 1e-12)^2 (1 - p + 1e-12)^2)`` (its double backward), or
    ``None`` for the second when ``second=False``. ``p`` is clipped to ``[0, 1]`` first
    (rounding may put a relaxed permutation a few ulps outside), so both are finite.

    ``1 - p`` goes through a ``maximum`` (a no-op on ``[0, 1]``) before ``1e-12`` is
    added: XLA (``jax.jit``, TensorFlow's ``jit_compile``) otherwise reassociates
    ``(1 - p) + 1e-12`` into ``(1 + 1e-12) - p``, which is ``1 - p`` in float32, and an
    entry at exactly ``p = 1`` gets ``l'' = 1 / 0``: an infinite or NaN Hessian and,
    through the Taylor form of `RankingLoss.call`, a NaN gradient.
    """
    p = ops.clip(p, 0.0, 1.0)
    d1 = (p - q) / ops.maximum(p * (1.0 - p), _BACKWARD_EPSILON)
    if not second:
        return d1, None
    eps = _DOUBLE_BACKWARD_EPSILON
    complement = ops.maximum(1.0 - p, 0.0)
    d2 = (ops.square(p) - 2.0 * p * q + q) / (
        ops.square(p + eps) * ops.square(complement + eps))
    return d1, d2


@keras.saving.register_keras_serializable(package="keras_newton")
class RankingLoss(keras.losses.Loss):
    """Ranking supervision loss: per-set BCE between ``P(scores)`` and the true permutation.

    For scores ``s`` ``(B, n)`` and ground-truth values ``y_true`` ``(B, n)`` (the values to
    be ordered, e.g. the four-digit numbers), with ``P = relaxation(s)`` ``(B, n, n)`` and
    ``Q = one_hot(argsort(y_true))`` (rows = ascending ranks, ties in index order;
    docs/conventions.md),
    the loss of set ``b`` is PyTorch's ``BCELoss`` (mean reduction) of ``P_b`` against
    ``Q_b``, the loss the diffsort experiments (Petersen et al., ICML 2021) train with and
    on which the Newton-loss paper's ranking benchmark builds. Per entry ``p`` of ``P``,
    ``q`` of ``Q``:

        l(p)   = -(q max(log p, -100) + (1 - q) max(log(1 - p), -100))
        l'(p)  = (p - q) / max(p (1 - p), 1e-12)                       (BCELoss backward)
        l''(p) = (p^2 - 2 p q + q) / ((p + 1e-12)^2 (1 - p + 1e-12)^2)  (double backward)

        loss_b = 1 / n^2 sum_{r, i} l(P_bri)

    ``l'`` and ``l''`` are PyTorch's derivative formulas, not the derivatives of the
    clamped ``l``: where ``p`` is tiny the backward still gives ``-1 / p`` (down to
    ``p ~ 1e-12``) and so a gradient ``-dp/ds / p`` of order one, which a clip of ``p``
    (Keras' BCE clips at ``epsilon = 1e-7``) would zero. ``log(1 - p)`` is computed as
    ``log1p(-p)`` and the backward's ``1e-12`` is ``float32(1e-12)``, as in ATen; an exact
    0 or 1 in ``P`` costs 100 with finite derivatives. ``call`` builds each entry as the
    Taylor polynomial ``l(p0) + l'(p0) d + l''(p0) d^2 / 2`` in ``d = p - p0`` with
    ``p0 = stop_gradient(p)`` (so ``d = 0``): its value is ``l`` and its first and second
    derivatives in ``p`` are ``l'`` and ``l''``, under any automatic differentiation of
    any backend, nested included.

    In float32, as in PyTorch, an entry that rounds to 1 while its true complement is
    below ~6e-8 gets ``l' = 1e12``: saturated sets can have very large gradients. They
    match PyTorch's in float32 too.

    The mean rather than the sum keeps the loss, and so its Hessian against the Tikhonov
    ``lambda`` of a `keras_newton.NewtonLoss`, on the scale of that setup at every ``n``;
    for a sum over the entries multiply ``lambda`` by ``n^2``.

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

        g = sum_ri l'(P_ri) J_ri / n^2,
        H = sum_ri l''(P_ri) J_ri J_ri^T / n^2 + <l'(P) / n^2, d2P/ds2>

    with the same ``l'`` and ``l''``: the numbers automatic differentiation of ``call``
    gives. ``derivatives="auto"`` uses them whenever a Hessian is needed, at every ``n``,
    and automatic differentiation (one reverse pass) when only the gradient is
    (``"fisher"``, ``"identity"``). Measured against per-set Hessians by automatic
    differentiation (``python benchmarks/ranking_derivatives.py``, batch 20, graph mode,
    n = 4 to 64; docs/results.md), the closed form traces 2-4x faster and needs less
    memory at every ``n`` (DiffSort, n = 64: 1.1 GiB against 5.9 GiB), and a call is as
    fast or faster up to n = 48; only DiffSort at n = 64 is slower per call (1.6x, its
    ``O(B n^4)`` work per network layer). There, ``derivatives="autodiff"`` with
    ``curvature="hessian"`` (the batch's summed Hessian only) is the fastest and leanest.
    `CLOSED_FORM_MAX_N` (default ``None``: no limit) caps the closed form's ``n``.

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

    #: Largest ``n`` for which ``derivatives="auto"`` uses the closed form (``None``: any).
    CLOSED_FORM_MAX_N = None

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
        # PyTorch's BCELoss as a second-order Taylor polynomial around the point, with
        # constant coefficients: its value is the clamped loss, its first and second
        # derivatives in p are PyTorch's backward and double backward, under any
        # (nested) automatic differentiation. delta is 0 but carries p's derivatives.
        point = ops.stop_gradient(p)
        d1, d2 = _bce_derivatives(point, q)
        delta = p - point
        bce = _bce_value(point, q) + d1 * delta + 0.5 * d2 * ops.square(delta)
        # The mean over the n x n entries as a sum and a division: Keras' `ops.mean`
        # computes float64 in float32 on JAX (x64) and PyTorch, whose gradient then
        # carries float32(1 / n^2).
        count = ops.cast(ops.shape(bce)[1] * ops.shape(bce)[2], bce.dtype)
        return ops.sum(bce, axis=(1, 2)) / count

    def _check_y_true(self, y_true, s):
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) != 2:
            raise ValueError(
                f"y_true must hold the values to be ordered, shape (batch, n); received "
                f"shape {tuple(y_true.shape)} for scores of shape {tuple(s.shape)}."
            )
        if any(a is not None and b is not None and a != b
               for a, b in zip(tuple(y_true.shape), tuple(s.shape))):
            raise ValueError(
                f"y_true and the scores must have the same shape (batch, n): one value per "
                f"scored item; received y_true of shape {tuple(y_true.shape)} and scores "
                f"of shape {tuple(s.shape)}."
            )
        return y_true

    def uses_closed_form(self, n, hessian=True):
        """Whether `loss_derivatives` uses the closed form for sets of ``n`` items."""
        if self.derivatives == "autodiff" or self.relaxation.permutation_derivatives is None:
            return False
        if self.derivatives == "closed_form":
            return True
        limit = self.CLOSED_FORM_MAX_N
        return hessian and n is not None and (limit is None or n <= limit)

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
        d1, d2 = _bce_derivatives(p, q, second=hessian)
        scale = 1.0 / float(s.shape[-1] ** 2)  # the mean over the n x n entries
        d1 = d1 * scale
        grad = ops.einsum("bri,brim->bm", d1, jac)
        if not hessian:
            return LossDerivatives(grad, None)
        h = ops.einsum("bri,brim,briq->bmq", d2 * scale, jac, jac) + hess_fn(d1)
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

"""Permutations in keras-newton's orientation, and the base of the relaxation layers.

``P[b, r, i]`` is the (probability) that item ``i`` sits at rank ``r`` in *ascending*
order, so ``P @ s[..., None]`` sorts ``s`` ascending. For hard permutations
``P[r, i] = 1`` iff ``argsort(y)[r] == i`` iff ``rank(y)_i == r`` (docs/conventions.md,
"Permutation matrices and ranks").

Ranks here are *stable*: ties go in index order, ``rank_i = #{j : y_j < y_i} +
#{j < i : y_j == y_i}``, computed by pairwise comparison so that every Keras backend gives
the same answer (``keras.ops.argsort`` is not guaranteed stable on every backend).
"""

import keras
from keras import ops


def stable_ranks(values):
    """Ascending stable ranks ``(B, n)`` int32 of ``values`` ``(B, n)`` (ties: index order).

    ``rank_i = #{j : v_j < v_i} + #{j < i : v_j == v_i}``, the inverse permutation of the
    stable ``argsort``.
    """
    v = ops.convert_to_tensor(values)
    n = ops.shape(v)[-1]
    less = ops.cast(v[..., None, :] < v[..., :, None], "int32")  # [.., i, j]: v_j < v_i
    equal = ops.cast(v[..., None, :] == v[..., :, None], "int32")
    idx = ops.arange(n)
    before = ops.cast(idx[None, :] < idx[:, None], "int32")  # [i, j]: j < i
    return ops.sum(less + equal * before, axis=-1)


def permutation_matrix(values, dtype="float32"):
    """The hard permutation ``Q = one_hot(argsort(values))`` ``(B, n, n)``, rows = ranks.

    ``Q[b, r, i] = 1`` iff item ``i`` has stable ascending rank ``r``.
    """
    ranks = stable_ranks(values)
    n = ops.shape(ranks)[-1]
    return ops.swapaxes(one_hot(ranks, n, dtype=dtype), -1, -2)


def one_hot(indices, n, dtype="float32"):
    """``one_hot(indices, n)`` (last axis new) by comparison with ``arange(n)``.

    The same numbers as ``keras.ops.one_hot`` for indices in ``0..n-1``, but traceable
    under every backend's vectorising map: PyTorch's ``one_hot`` reads the largest index
    with ``.item()``, which ``torch.func.vmap`` (per-sample autodiff) and Dynamo reject.
    """
    idx = ops.convert_to_tensor(indices)
    classes = ops.arange(n, dtype=idx.dtype)
    return ops.cast(ops.equal(idx[..., None], classes), dtype)


def softmax_derivatives(p, jac_logits, curv_factor=None, curv_vector=None,
                        hessian=True):
    """Derivatives of row-wise softmax probabilities ``p = softmax(L)`` w.r.t. scores ``s``.

    With ``G_j = dL_j/ds - sum_l p_l dL_l/ds`` (per row ``r``, omitted):

        dp_j/ds = p_j G_j
        d2p_j/ds2 = p_j (G_j G_j^T - sum_l p_l G_l G_l^T + d2L_j/ds2 - sum_l p_l d2L_l/ds2)

    so for weights ``w``, ``sum_j w_j d2p_j/ds2 = sum_j c_j (G_j G_j^T + d2L_j/ds2)`` with
    ``c_j = p_j (w_j - sum_l p_l w_l)``, computed without forming the ``(n, n, n, n)``
    second derivatives.

    Args:
        p: ``(B, n, n)`` probabilities, the softmax over the last axis.
        jac_logits: ``(B, n, n, m)``, ``dL[b, r, j] / ds[b, k]``.
        curv_factor, curv_vector: logits curvature of the form
            ``d2L[r, j]/ds2 = curv_factor[r, j] curv_vector[r, j] curv_vector[r, j]^T``
            (``(B, n, n)`` and ``(B, n, n, m)``), or ``None`` for piecewise-linear logits.
        hessian: whether to return the weighted-Hessian function.

    Returns:
        ``(jac (B, n, n, m), hess_fn)`` where ``hess_fn(w)`` maps weights ``(B, n, n)`` to
        ``sum_rj w[b, r, j] d2p[b, r, j]/ds2`` ``(B, m, m)``; ``hess_fn`` is ``None`` when
        ``hessian=False``.
    """
    centred = jac_logits - ops.einsum("brl,brlm->brm", p, jac_logits)[:, :, None, :]
    jac = p[..., None] * centred
    if not hessian:
        return jac, None

    def hess_fn(weights):
        c = p * (weights - ops.sum(p * weights, axis=-1, keepdims=True))
        h = ops.einsum("brj,brjm,brjq->bmq", c, centred, centred)
        if curv_factor is not None:
            h = h + ops.einsum("brj,brjm,brjq->bmq", c * curv_factor, curv_vector,
                               curv_vector)
        return h

    return jac, hess_fn


class SortingRelaxation(keras.layers.Layer):
    """Base of the layers mapping scores ``(B, n)`` to a relaxed permutation ``(B, n, n)``.

    Subclasses implement ``relaxed_permutation(scores)`` returning ``P`` in the orientation of
    docs/conventions.md (rows = ascending ranks), and may implement
    ``permutation_derivatives(scores, hessian)`` returning ``(P, J, hess_fn)``: ``P``
    ``(B, n, n)``, its Jacobian ``J[b, r, i, m] = dP[b, r, i] / ds[b, m]`` and a function
    ``hess_fn(w)`` mapping weights ``w`` ``(B, n, n)`` to the weighted second derivative
    ``sum_ri w[b, r, i] d2P[b, r, i] / ds[b]^2`` ``(B, n, n)`` (``None`` when
    ``hessian=False``). `keras_newton.losses.RankingLoss` builds the loss's gradient and
    Hessian for `keras_newton.NewtonLoss` from them instead of automatic differentiation.
    This class checks the input shape.
    """

    permutation_derivatives = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = False

    @staticmethod
    def _check_shape(shape):
        if len(shape) != 2:
            raise ValueError(
                f"A sorting relaxation takes scores of shape (batch, n); received an input "
                f"of shape {tuple(shape)}."
            )
        n = shape[-1]
        if n is not None and n < 2:
            raise ValueError(
                f"A sorting relaxation needs n >= 2 scores per set; received an input of "
                f"shape {tuple(shape)}."
            )
        return n

    def build(self, input_shape):
        self._check_shape(input_shape)
        super().build(input_shape)

    def call(self, scores):
        self._check_shape(tuple(scores.shape))
        return self.relaxed_permutation(scores)

    def relaxed_permutation(self, scores):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        self._check_shape(input_shape)
        return (input_shape[0], input_shape[1], input_shape[1])

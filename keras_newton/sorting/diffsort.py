"""`DiffSort`: differentiable sorting networks (Petersen et al., ICML 2021 / ICLR 2022)."""

import keras
import numpy as np
from keras import ops

from keras_newton import _checks
from keras_newton.sorting.distributions import check_distribution
from keras_newton.sorting.distributions import swap_probability_derivatives
from keras_newton.sorting.distributions import swap_probability_of_difference
from keras_newton.sorting.networks import layer_matrices
from keras_newton.sorting.networks import sorting_plan
from keras_newton.sorting.permutation import SortingRelaxation


@keras.saving.register_keras_serializable(package="keras_newton")
class DiffSort(SortingRelaxation):
    """Differentiable sorting network: a relaxed permutation from soft conditional swaps.

    Petersen, Borgelt, Kuehne, Deussen: "Differentiable Sorting Networks for Scalable
    Sorting and Ranking Supervision" (ICML 2021) and "Monotonic Differentiable Sorting
    Networks" (ICLR 2022). Each comparator of a sorting network (`networks.py`) on the
    values ``(a, b)`` becomes a soft swap with ``alpha = f(b - a)`` (`distributions.py`):

        soft_min = alpha a + (1 - alpha) b,     soft_max = (1 - alpha) a + alpha b

    and the same mixing of the two wires' rows builds the relaxed permutation layer by
    layer, starting from the identity: with ``X[s, i]`` the probability that item ``i`` is
    on wire ``s``,

        X[min wire] <- alpha X[a] + (1 - alpha) X[b],   X[max wire] <- (1 - alpha) X[a] + alpha X[b]

    The output ``P[r, i]`` = ``X`` after the last layer, wire ``r`` = ascending rank ``r``
    (the orientation of docs/conventions.md; the PyTorch ``diffsort`` package returns its
    transpose). Rows and columns of ``P`` sum to 1 (``P`` is doubly stochastic) and as
    ``steepness -> inf`` ``P`` tends to ``one_hot(argsort(s))``. Bitonic networks for
    ``n`` not a power of two follow the ``diffsort`` package: the top
    ``2^ceil(log2 n) - n`` wires are discarded and comparators touching them are identity
    maps, so ``P`` equals diffsort's (see
    `networks.py`).

    Args:
        network: ``"odd_even"`` (``n`` layers) or ``"bitonic"``
            (``ceil(log2 n) (ceil(log2 n) + 1) / 2`` layers).
        steepness: inverse temperature ``beta > 0`` of the swap sigmoid.
        distribution: ``"logistic"``, ``"logistic_phi"``, ``"gaussian"``,
            ``"reciprocal"``, ``"cauchy"`` or ``"optimal"``.
        art_lambda: exponent of the activation replacement trick (``"logistic_phi"``),
            ``>= 0``.
        **kwargs: `keras.layers.Layer` arguments.

    Input: scores ``(B, n)`` with static ``n >= 2``. Output: ``(B, n, n)``.

    Example:

    ```python
    relax = keras_newton.layers.DiffSort("odd_even", steepness=10.0, distribution="cauchy")
    model.compile("adam", loss=keras_newton.NewtonLoss(
        keras_newton.losses.RankingLoss(relax), curvature="hessian", tikhonov=1e-2))
    ```
    """

    def __init__(self, network="odd_even", steepness=10.0, distribution="cauchy",
                 art_lambda=0.25, **kwargs):
        super().__init__(**kwargs)
        if network not in ("odd_even", "bitonic"):
            raise ValueError(
                f"Unknown network {network!r}: expected 'odd_even' or 'bitonic'."
            )
        self.network = network
        self.steepness = _checks.check_positive_float("steepness", steepness)
        self.distribution = check_distribution(distribution)
        self.art_lambda = _checks.check_non_negative_float("art_lambda", art_lambda)
        self._plans = {}

    def _plan(self, n):
        if n is None:
            raise ValueError(
                "DiffSort needs a static number of scores per set: the input's last axis "
                "must be known (e.g. keras.Input(shape=(n,)))."
            )
        if n not in self._plans:
            self._plans[n] = sorting_plan(self.network, n)
        return self._plans[n]

    def build(self, input_shape):
        n = self._check_shape(input_shape)
        if n is not None:
            self._plan(n)
        super().build(input_shape)

    def _matrices(self, n):
        """Per layer ``(W, D)`` and the rank selection ``R`` (NumPy float64), cached."""
        key = ("matrices", n)
        if key not in self._plans:
            plan = self._plan(n)
            mats = [layer_matrices(lo, hi, n) for lo, hi in plan.layers]
            ranks = np.zeros((n, n))
            ranks[np.arange(n), plan.rank_slots] = 1.0
            self._plans[key] = (mats, ranks)
        return self._plans[key]

    def relaxed_permutation(self, scores):
        x = ops.convert_to_tensor(scores)
        n = x.shape[-1]
        mats, ranks = self._matrices(n)
        dtype = x.dtype
        perm = None  # X[b, slot, item]; the identity before the first layer
        for w, d in mats:
            w = ops.convert_to_tensor(w, dtype)
            d = ops.convert_to_tensor(d, dtype)
            diff = -ops.matmul(x, d)  # (B, k): b - a of every comparator
            alpha = swap_probability_of_difference(diff, self.steepness, self.distribution,
                                                   self.art_lambda)
            # M = W + D diag(alpha) D^T, symmetric: M x and M X mix each pair.
            mix = w[None] + ops.matmul(d[None] * alpha[:, None, :], ops.transpose(d)[None])
            x = ops.squeeze(ops.matmul(mix, x[:, :, None]), axis=-1)
            perm = mix if perm is None else ops.matmul(mix, perm)
        if perm is None:  # unreachable for n >= 2 (every network has a comparator)
            perm = ops.broadcast_to(ops.eye(n, dtype=dtype)[None], (ops.shape(x)[0], n, n))
        return ops.matmul(ops.convert_to_tensor(ranks, dtype)[None], perm)

    def permutation_derivatives(self, scores, hessian=True):
        """``(P, dP/ds, weighted d2P/ds2)`` in closed form (see `SortingRelaxation`).

        Each layer ``l`` maps the values ``x`` and the permutation ``X`` through
        ``M_l = W + D diag(alpha) D^T`` (`networks.layer_matrices`), ``alpha = f(delta)``,
        ``delta = -(D^T x)`` (``b - a``). Forward mode carries ``dx``, ``d2x`` and ``dX``;
        with ``u = D^T x`` and ``V = D^T X`` the product rule gives, for directions
        ``m, q`` of ``s``:

            d(M x)_m   = M dx_m + D (dalpha_m u)
            d2(M x)_mq = M d2x_mq + D (d2alpha_mq u - dalpha_m ddelta_q - dalpha_q ddelta_m)
            d(M X)_m   = M dX_m + D (dalpha_m V)
            d2(M X)_mq = M d2X_mq + D Z_mq,  Z_mq = d2alpha_mq V + dalpha_m dV_q + dalpha_q dV_m

        with ``dalpha = f'(delta) ddelta`` and ``d2alpha = f''(delta) ddelta ddelta^T +
        f'(delta) d2delta`` (`distributions.swap_probability_derivatives`). The weighted
        second derivative ``<w, d2P>`` never forms ``d2X``: with adjoint weights
        ``Omega_L = R^T w`` (``R`` the rank selection), ``Omega_{l-1} = M_l^T Omega_l``,
        it is ``sum_l <D_l^T Omega_l, Z_l>``. Cost ``O(B n^4)`` per layer.
        """
        x = ops.convert_to_tensor(scores)
        n = x.shape[-1]
        mats, ranks = self._matrices(n)
        dtype = x.dtype
        batch = ops.shape(x)[0]
        eye = ops.eye(n, dtype=dtype)
        jx = ops.broadcast_to(eye[None], (batch, n, n))  # dx[b, slot] / ds[b, m]
        hx = ops.zeros((batch, n, n, n), dtype=dtype) if hessian else None
        perm = ops.broadcast_to(eye[None], (batch, n, n))  # X[b, slot, item]
        jperm = ops.zeros((batch, n, n, n), dtype=dtype)
        saved = []
        for w, d in mats:
            w = ops.convert_to_tensor(w, dtype)
            d = ops.convert_to_tensor(d, dtype)
            u = ops.matmul(x, d)  # (B, k) = a - b
            jdelta = -ops.einsum("nk,bnm->bkm", d, jx)
            alpha, a1, a2 = swap_probability_derivatives(
                -u, self.steepness, self.distribution, self.art_lambda)
            dalpha = a1[..., None] * jdelta  # (B, k, m)
            mix = w[None] + ops.matmul(d[None] * alpha[:, None, :], ops.transpose(d)[None])
            v = ops.einsum("nk,bni->bki", d, perm)
            if hessian:
                hdelta = -ops.einsum("nk,bnmq->bkmq", d, hx)
                d2alpha = (a2[..., None, None] * jdelta[..., :, None] * jdelta[..., None, :]
                           + a1[..., None, None] * hdelta)
                cross = dalpha[..., :, None] * jdelta[..., None, :]
                hx = ops.einsum("bnl,blmq->bnmq", mix, hx) + ops.einsum(
                    "nk,bkmq->bnmq", d,
                    d2alpha * u[..., None, None] - cross - ops.swapaxes(cross, -1, -2))
                jv = ops.einsum("nk,bnim->bkim", d, jperm)
                saved.append((d, mix, v, jv, dalpha, d2alpha))
            jx = ops.matmul(mix, jx) + ops.einsum("nk,bkm->bnm", d, dalpha * u[..., None])
            x = ops.squeeze(ops.matmul(mix, x[:, :, None]), axis=-1)
            jperm = ops.einsum("bnl,blim->bnim", mix, jperm) + ops.einsum(
                "nk,bkm,bki->bnim", d, dalpha, v)
            perm = ops.matmul(mix, perm)
        r = ops.convert_to_tensor(ranks, dtype)
        p = ops.matmul(r[None], perm)
        jac = ops.einsum("rn,bnim->brim", r, jperm)
        if not hessian:
            return p, jac, None

        def hess_fn(weights):
            omega = ops.einsum("rn,bri->bni", r, ops.convert_to_tensor(weights, dtype))
            h = None
            for d, mix, v, jv, dalpha, d2alpha in reversed(saved):
                od = ops.einsum("nk,bni->bki", d, omega)
                c = ops.sum(od * v, axis=-1)  # (B, k)
                e = ops.einsum("bki,bkiq->bkq", od, jv)
                term = ops.einsum("bkmq,bk->bmq", d2alpha, c)
                cross = ops.einsum("bkm,bkq->bmq", dalpha, e)
                term = term + cross + ops.swapaxes(cross, -1, -2)
                h = term if h is None else h + term
                omega = ops.matmul(ops.swapaxes(mix, -1, -2), omega)
            return h

        return p, jac, hess_fn

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "network": self.network,
                "steepness": self.steepness,
                "distribution": self.distribution,
                "art_lambda": self.art_lambda,
            }
        )
        return config

"""`DiffSort`: differentiable sorting networks (Petersen et al., ICML 2021 / ICLR 2022)."""

import keras
from keras import ops

from keras_newton.sorting.distributions import check_distribution
from keras_newton.sorting.distributions import swap_probability
from keras_newton.sorting.networks import sorting_plan
from keras_newton.sorting.permutation import SortingRelaxation
from keras_newton.sorting.permutation import check_positive


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
    (DESIGN.md orientation; the PyTorch ``diffsort`` package returns its transpose). Rows
    and columns of ``P`` sum to 1 (``P`` is doubly stochastic) and as ``steepness -> inf``
    ``P`` tends to ``one_hot(argsort(s))``. Bitonic networks for ``n`` not a power of two
    pad with ``+inf`` values, which never mix with the real ones (see `networks.py`).

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
        self.steepness = check_positive("steepness", steepness)
        self.distribution = check_distribution(distribution)
        if isinstance(art_lambda, bool) or not isinstance(art_lambda, (int, float)):
            raise TypeError(
                f"art_lambda must be a non-negative finite number; received {art_lambda!r}."
            )
        if not (0.0 <= float(art_lambda) < float("inf")):
            raise ValueError(
                f"art_lambda must be a non-negative finite number; received {art_lambda!r}."
            )
        self.art_lambda = float(art_lambda)
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

    def relaxed_permutation(self, scores):
        x = ops.convert_to_tensor(scores)
        n = x.shape[-1]
        plan = self._plan(n)
        # X[b, slot, item]: probability that item is in slot; starts as the identity.
        perm = ops.broadcast_to(ops.eye(n, dtype=x.dtype)[None], (ops.shape(x)[0], n, n))
        for (lo, hi), gather in zip(plan.layers, plan.gathers):
            a = ops.take(x, lo, axis=1)
            b = ops.take(x, hi, axis=1)
            alpha = swap_probability(a, b, self.steepness, self.distribution, self.art_lambda)
            beta = 1.0 - alpha
            soft_min = alpha * a + beta * b
            soft_max = beta * a + alpha * b
            x = ops.take(ops.concatenate([x, soft_min, soft_max], axis=1), gather, axis=1)
            pa = ops.take(perm, lo, axis=1)
            pb = ops.take(perm, hi, axis=1)
            w = alpha[:, :, None]
            p_min = w * pa + (1.0 - w) * pb
            p_max = (1.0 - w) * pa + w * pb
            perm = ops.take(ops.concatenate([perm, p_min, p_max], axis=1), gather, axis=1)
        return ops.take(perm, plan.rank_slots, axis=1)

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

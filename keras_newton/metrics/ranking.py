"""Ranking metrics: exact-match and element-wise rank accuracy (docs/conventions.md)."""

import keras
from keras import ops

from keras_newton import _checks
from keras_newton.sorting.permutation import stable_ranks


def _rank_matches(y_true, y_pred):
    """``(B, n)`` float: 1 where the stable rank of item ``i`` agrees in both."""
    y_true = ops.convert_to_tensor(y_true)
    y_pred = ops.convert_to_tensor(y_pred)
    if len(y_pred.shape) != 2 or tuple(y_true.shape) != tuple(y_pred.shape):
        raise ValueError(
            "Ranking metrics take y_true (the values to be ordered) and y_pred (the scores) "
            f"of the same shape (batch, n); received {tuple(y_true.shape)} and "
            f"{tuple(y_pred.shape)}."
        )
    # argsort(a)[r] == argsort(b)[r] for all r  <=>  rank(a)_i == rank(b)_i for all i, and
    # the number of agreeing positions is the same either way (fixed points of a
    # permutation and of its inverse correspond).
    return ops.cast(ops.equal(stable_ranks(y_true), stable_ranks(y_pred)), "float32")


class _RankMatchMean(keras.metrics.Mean):
    """Mean over sets of ``_per_set(matches)``, ``matches`` from `_rank_matches`."""

    @staticmethod
    def _per_set(matches):
        """``(B, n)`` matches -> ``(B,)`` per-set score."""
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        per_set = self._per_set(_rank_matches(y_true, y_pred))
        return super().update_state(per_set, sample_weight=sample_weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_newton")
class ExactMatchAccuracy(_RankMatchMean):
    """Fraction of sets whose predicted order is entirely right.

    A set counts when ``argsort(y_pred) == argsort(y_true)`` at every position (stable
    argsort: ties go in index order, in the truth and in the scores alike; docs/conventions.md). The
    "exact match" accuracy of Grover et al. (ICLR 2019) and Petersen et al. (ICML 2021).

    With ``first=k`` only the first ``k`` items of each set are compared (the order of
    ``y_pred[:, :k]`` against that of ``y_true[:, :k]``): the "EM5" accuracy on which the
    diffsort experiments select their best validation step for sets of more than 5 items.

    Args:
        first: ``None`` (every item) or the number ``k >= 2`` of leading items compared.
        name: metric name.
        dtype: metric dtype.

    Example:

    ```python
    model.compile("adam", loss=..., metrics=[keras_newton.metrics.ExactMatchAccuracy()])
    ```
    """

    @staticmethod
    def _per_set(matches):
        return ops.min(matches, axis=-1)

    def __init__(self, first=None, name="exact_match", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.first = _checks.check_int("first", first, 2, allow_none=True)

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self.first is not None:
            y_true = ops.convert_to_tensor(y_true)[:, : self.first]
            y_pred = ops.convert_to_tensor(y_pred)[:, : self.first]
        return super().update_state(y_true, y_pred, sample_weight=sample_weight)

    def get_config(self):
        return dict(super().get_config(), first=self.first)


@keras.saving.register_keras_serializable(package="keras_newton")
class ElementwiseRankAccuracy(_RankMatchMean):
    """Fraction of positions ``r`` with ``argsort(y_pred)[r] == argsort(y_true)[r]``.

    The mean over the ``n`` positions of a set, then over sets (stable argsort, ties in
    index order; docs/conventions.md): the "element-wise" / "fraction correct" accuracy of Grover et
    al. (ICLR 2019) and Petersen et al. (ICML 2021).

    Args:
        name: metric name.
        dtype: metric dtype.

    Example:

    ```python
    model.compile("adam", loss=..., metrics=[keras_newton.metrics.ElementwiseRankAccuracy()])
    ```
    """

    @staticmethod
    def _per_set(matches):
        return ops.mean(matches, axis=-1)

    def __init__(self, name="elementwise_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)

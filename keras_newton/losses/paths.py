"""Path losses: `PathLoss` (L1 or squared L2 distance between a relaxed path and the true
path) and `hamming_path_loss` (the exact path's Hamming distance, for the sampled losses)."""

import keras
from keras import ops

from keras_newton.paths.exact import nonnegative_shortest_path
from keras_newton.paths.targets import unpack_path_targets

__all__ = ["PathLoss", "hamming_path_loss"]

_KINDS = ("l1", "l2")
_AGGREGATES = ("mean", "sum")


@keras.saving.register_keras_serializable(package="keras_newton")
class PathLoss(keras.losses.Loss):
    """Per-map distance between a relaxed path and the true path (AlgoVision, Newton losses).

    With the true path ``P*`` (a ``(B, H, W)`` mask) and a relaxed path ``P`` in [0, 1]
    (or the costs ``c``, when a ``relaxation`` maps them to ``P = relaxation(c)``):

        l1: l_i = agg_{h, w} |P_ihw - P*_ihw|
        l2: l_i = agg_{h, w} (P_ihw - P*_ihw)^2          (the squared L2 of paper Table 2)

    where ``agg`` is the mean over the ``H * W`` cells (default, the per-element mean of
    PyTorch's ``L1Loss``/``MSELoss`` that AlgoVision trains with) or their sum. The
    per-sample loss has shape ``(B,)``, so the loss is a valid `NewtonLoss` base
    (Petersen et al., NeurIPS 2024, Table 2: relaxed Bellman-Ford, For/While x L1/L2).

    ``y_true`` is the true path ``(B, H, W)``, or the path and the true costs packed by
    `keras_newton.paths.pack_path_targets` into ``(B, H, W, 2)`` (so that the cost-based
    path metrics get the costs in the same ``model.fit``); only the path is used here.

    Args:
        kind: ``"l1"`` or ``"l2"`` (squared).
        relaxation: optional layer or callable applied to ``y_pred`` first, e.g.
            `keras_newton.layers.RelaxedBellmanFord`; then ``y_pred`` holds the costs
            ``(B, H, W)`` and the loss composes relaxation and distance (what `NewtonLoss`
            needs to take its Newton step in cost space). Without it ``y_pred`` is the
            relaxed path.
        aggregate: ``"mean"`` (default) or ``"sum"`` over the cells of a map.
        reduction: Keras reduction over the batch.
        name: loss name.
        dtype: loss dtype.

    Example:

    ```python
    relaxed = keras_newton.layers.RelaxedBellmanFord(beta=10.0, loop="for")
    model = keras_newton.models.comb_resnet18()                # images -> costs
    model.compile(
        "adam",
        loss=keras_newton.NewtonLoss(PathLoss("l1", relaxation=relaxed), curvature="fisher"),
        metrics=[keras_newton.metrics.PerfectMatch()],
    )
    model.fit(images, true_paths)
    ```
    """

    def __init__(self, kind="l1", relaxation=None, aggregate="mean",
                 reduction="sum_over_batch_size", name="path_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if kind not in _KINDS:
            raise ValueError(f"kind must be 'l1' or 'l2' (squared L2); received {kind!r}.")
        if aggregate not in _AGGREGATES:
            raise ValueError(f"aggregate must be 'mean' or 'sum'; received {aggregate!r}.")
        if relaxation is not None and not callable(relaxation):
            raise TypeError(
                "relaxation must be a layer or callable mapping costs (B, H, W) to a relaxed "
                f"path, or None; received {type(relaxation).__name__}."
            )
        self.kind = kind
        self.relaxation = relaxation
        self.aggregate = aggregate

    def call(self, y_true, y_pred):
        paths, _ = unpack_path_targets(y_true)
        y_pred = ops.convert_to_tensor(y_pred)
        pred = y_pred if self.relaxation is None else self.relaxation(y_pred)
        pred = ops.convert_to_tensor(pred)
        if tuple(pred.shape[1:]) != tuple(paths.shape[1:]) or len(pred.shape) != 3:
            raise ValueError(
                f"PathLoss expects a relaxed path of shape (B, H, W) matching the true path "
                f"of shape {tuple(paths.shape)}; received {tuple(pred.shape)}"
                + ("" if self.relaxation is None else " from the relaxation")
                + "."
            )
        diff = pred - ops.cast(paths, pred.dtype)
        per_cell = ops.abs(diff) if self.kind == "l1" else ops.square(diff)
        if self.aggregate == "mean":
            return ops.mean(per_cell, axis=(1, 2))
        return ops.sum(per_cell, axis=(1, 2))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kind": self.kind,
                "relaxation": None if self.relaxation is None
                else keras.saving.serialize_keras_object(self.relaxation),
                "aggregate": self.aggregate,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("relaxation") is not None:
            config["relaxation"] = keras.saving.deserialize_keras_object(config["relaxation"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_newton")
def hamming_path_loss(y_true, costs):
    """Normalised Hamming distance of the exact path of ``costs`` to the true path, per map.

        l_i = mean_{h, w} |P(c_i)_hw - P*_ihw|,    P(c) = nonnegative_shortest_path(c)

    with ``P*`` the true ``(B, H, W)`` path mask: the black box "solver + loss" that
    stochastic smoothing of the loss differentiates (Petersen et al., NeurIPS 2024,
    Table 3, "smooth loss"). It is piecewise constant in the costs, so it has no useful
    gradient of its own; `keras_newton.losses.StochasticSmoothingLoss` estimates one.
    Returns ``(B,)``. Registered for Keras serialization.

    Example:

    ```python
    loss = keras_newton.losses.StochasticSmoothingLoss(hamming_path_loss, samples=10,
                                                       sigma=0.1)
    ```
    """
    path = nonnegative_shortest_path(costs)
    return ops.mean(ops.abs(path - ops.cast(y_true, path.dtype)), axis=(1, 2))

"""Shortest-path metrics: perfect match, optimal-cost match, cost ratio (docs/conventions.md).

The model predicts costs ``(B, H, W)``; each metric solves the shortest path on them
exactly (`keras_newton.paths.shortest_path`) and compares it with the true path:

- perfect match: the predicted path mask equals the true one;
- optimal-cost match: the predicted path, priced with the *true* costs, costs as much as
  the true path (paths are often not unique, so this is the fairer score; Vlastelica et
  al., ICLR 2020, report it);
- cost ratio: true cost of the predicted path / true cost of the true path (>= 1).

Predicted costs are read as the solver reads them inside a graph, in every mode: a
negative cost counts as 0 (`keras_newton.paths.nonnegative_shortest_path`), so a metric
gives the same number eagerly, in a graph and under XLA. NaN predictions are an error
eagerly (a blocked cell inside a graph).

The last two need the true costs: pass ``y_true = pack_path_targets(paths, costs)``,
``(B, H, W, 2)`` (`keras_newton.paths.pack_path_targets`). `path_metrics` computes all
three at once outside ``model.fit``.
"""

import keras
import numpy as np
from keras import ops

from keras_newton import _checks
from keras_newton.paths.exact import nonnegative_shortest_path
from keras_newton.paths.exact import solve_shortest_paths
from keras_newton.paths.targets import unpack_path_targets

__all__ = ["CostRatio", "OptimalCostMatch", "PerfectMatch", "path_metrics"]


def _true_path_and_costs(y_true, need_costs, metric):
    paths, costs = unpack_path_targets(y_true)
    if need_costs and costs is None:
        raise ValueError(
            f"{metric} needs the true costs: pass y_true = "
            "keras_newton.paths.pack_path_targets(paths, costs) of shape (B, H, W, 2); "
            f"received only paths of shape {tuple(paths.shape)}."
        )
    return paths, costs


def _check_pred(y_pred, paths):
    y_pred = ops.convert_to_tensor(y_pred)
    if len(y_pred.shape) != 3 or tuple(y_pred.shape[1:]) != tuple(paths.shape[1:]):
        raise ValueError(
            f"y_pred must be predicted costs of shape (B, H, W) matching the true paths of "
            f"shape {tuple(paths.shape)}; received {tuple(y_pred.shape)}."
        )
    return y_pred


class _PathMetric(keras.metrics.Mean):
    """Mean over maps of a per-map score of the exact path on the predicted costs."""

    _needs_costs = True

    def update_state(self, y_true, y_pred, sample_weight=None):
        paths, costs = _true_path_and_costs(y_true, self._needs_costs, type(self).__name__)
        y_pred = _check_pred(y_pred, paths)
        pred_paths = nonnegative_shortest_path(ops.stop_gradient(y_pred))
        paths = ops.cast(paths, pred_paths.dtype)
        if costs is not None:
            costs = ops.cast(costs, pred_paths.dtype)
        values = self._score(pred_paths, paths, costs)
        return super().update_state(values, sample_weight=sample_weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_newton")
class PerfectMatch(_PathMetric):
    """Fraction of maps whose shortest path on the predicted costs equals the true path.

        perfect_match = mean_i [ shortest_path(c_hat_i) == P*_i at every cell ]

    (Vlastelica et al., ICLR 2020; Petersen et al., NeurIPS 2024, Tables 2-3.)

    ``y_pred``: predicted costs ``(B, H, W)``; ``y_true``: the true path ``(B, H, W)`` or
    path and costs packed by `keras_newton.paths.pack_path_targets`.

    Example:

    ```python
    model.compile("adam", loss=..., metrics=[PerfectMatch(), OptimalCostMatch()])
    ```
    """

    _needs_costs = False

    def __init__(self, name="perfect_match", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _score(self, pred_paths, paths, costs):
        equal = ops.all(ops.equal(pred_paths, paths), axis=(1, 2))
        return ops.cast(equal, "float32")


@keras.saving.register_keras_serializable(package="keras_newton")
class OptimalCostMatch(_PathMetric):
    """Fraction of maps whose predicted path is optimal under the true costs.

        cost*(P) = sum_hw P_hw c*_hw,
        optimal_cost_match = mean_i [ cost*(shortest_path(c_hat_i)) <= (1 + tolerance) cost*(P*_i) ]

    A predicted path never costs less than the true (optimal) one, so this counts the
    maps whose predicted path is one of the optimal paths, up to a relative
    ``tolerance`` for float rounding (docs/conventions.md; Vlastelica et al., ICLR 2020).

    ``y_pred``: predicted costs ``(B, H, W)``; ``y_true``: path and true costs packed by
    `keras_newton.paths.pack_path_targets`, ``(B, H, W, 2)``.

    Args:
        tolerance: relative tolerance on the cost, ``>= 0``; default ``1e-4``.
        name, dtype: metric name and dtype.

    Example:

    ```python
    y = keras_newton.paths.pack_path_targets(true_paths, true_costs)
    model.compile("adam", loss=PathLoss("l1", relaxation=RelaxedBellmanFord()),
                  metrics=[OptimalCostMatch(), CostRatio()])
    model.fit(images, y)
    ```
    """

    def __init__(self, tolerance=1e-4, name="optimal_cost_match", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.tolerance = _checks.check_non_negative_float("tolerance", tolerance)

    def _score(self, pred_paths, paths, costs):
        pred_cost = ops.sum(pred_paths * costs, axis=(1, 2))
        true_cost = ops.sum(paths * costs, axis=(1, 2))
        return ops.cast(pred_cost <= true_cost * (1.0 + self.tolerance), "float32")

    def get_config(self):
        return {**super().get_config(), "tolerance": self.tolerance}


@keras.saving.register_keras_serializable(package="keras_newton")
class CostRatio(_PathMetric):
    """Mean ratio of the true cost of the predicted path to the true cost of the true path.

        cost_ratio = mean_i cost*(shortest_path(c_hat_i)) / cost*(P*_i),
        cost*(P) = sum_hw P_hw c*_hw

    1 for optimal predictions, larger otherwise (docs/conventions.md; Vlastelica et al., ICLR 2020).

    ``y_pred``: predicted costs ``(B, H, W)``; ``y_true``: path and true costs packed by
    `keras_newton.paths.pack_path_targets`, ``(B, H, W, 2)``.

    Example:

    ```python
    model.compile("adam", loss=..., metrics=[CostRatio()])
    model.fit(images, keras_newton.paths.pack_path_targets(true_paths, true_costs))
    ```
    """

    def __init__(self, name="cost_ratio", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _score(self, pred_paths, paths, costs):
        pred_cost = ops.sum(pred_paths * costs, axis=(1, 2))
        true_cost = ops.sum(paths * costs, axis=(1, 2))
        return pred_cost / true_cost


def path_metrics(pred_costs, true_costs, true_paths, tolerance=1e-4, batch_size=1000):
    """Perfect-match %, optimal-cost %, and mean cost ratio of predicted costs.

    Solves the exact shortest path on every predicted cost map (compiled, in batches:
    `keras_newton.paths.solve_shortest_paths`) and compares it with the true path (see
    `PerfectMatch`, `OptimalCostMatch`, `CostRatio`).

    Args:
        pred_costs: predicted costs ``(N, H, W)`` (array or tensor).
        true_costs: true costs ``(N, H, W)``.
        true_paths: true shortest paths ``(N, H, W)`` in {0, 1}.
        tolerance: relative cost tolerance of the optimal-cost match.
        batch_size: maps solved per call.

    Returns:
        dict with ``"perfect_match"`` and ``"optimal_cost"`` in percent (0-100) and
        ``"cost_ratio"`` (mean, >= 1), as Python floats.

    Example:

    ```python
    scores = path_metrics(model.predict(test_images), test_costs, test_paths)
    print(f"{scores['optimal_cost']:.1f}% optimal")
    ```
    """
    true_costs = np.asarray(true_costs, np.float64)
    true_paths = np.asarray(true_paths, np.float64)
    pred_costs = np.asarray(ops.convert_to_numpy(ops.convert_to_tensor(pred_costs)))
    if not (pred_costs.ndim == 3 and pred_costs.shape == true_costs.shape
            == true_paths.shape and len(pred_costs)):
        raise ValueError(
            "pred_costs, true_costs and true_paths must all have shape (N, H, W), N >= 1; received "
            f"{pred_costs.shape}, {true_costs.shape} and {true_paths.shape}."
        )
    tolerance = _checks.check_non_negative_float("tolerance", tolerance)
    batch_size = _checks.check_positive_int("batch_size", batch_size)
    # Negative predictions count as 0, as in the metric classes (NaN stays an error).
    pred_costs = np.where(pred_costs < 0, 0.0, pred_costs).astype(pred_costs.dtype)
    pred_paths = solve_shortest_paths(pred_costs, batch_size=batch_size).astype(np.float64)
    match = np.all(pred_paths == true_paths, axis=(1, 2))
    pred_cost = np.sum(pred_paths * true_costs, axis=(1, 2))
    true_cost = np.sum(true_paths * true_costs, axis=(1, 2))
    return {
        "perfect_match": 100.0 * float(np.mean(match)),
        "optimal_cost": 100.0 * float(np.mean(pred_cost <= true_cost * (1.0 + tolerance))),
        "cost_ratio": float(np.mean(pred_cost / true_cost)),
    }

"""Bad input gets a clear error or a defined result (first rows of the bad-input table).

- `RankingLoss` with ``y_true`` of another ``n`` than the scores: a ValueError naming both
  shapes, not a backend shape error.
- `RelaxedBellmanFord` on integer costs: computed in float, equal to the float costs' result.
- `NewtonLoss.target` on integer predictions: a float target equal to the float inputs' one.
"""

import numpy as np
import pytest

from keras_newton import NewtonLoss
from keras_newton.layers import NeuralSort, RelaxedBellmanFord
from keras_newton.losses import RankingLoss


def test_ranking_loss_names_both_shapes_when_n_differs(rng):
    loss = RankingLoss(NeuralSort())
    y_true = rng.random((4, 4)).astype("float32")
    scores = rng.random((4, 5)).astype("float32")
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        loss(y_true, scores)
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        NewtonLoss(loss, curvature="hessian").target(y_true, scores)


def test_relaxed_bellman_ford_integer_costs_are_computed_in_float(rng):
    costs = rng.integers(1, 6, size=(2, 5, 5))
    layer = RelaxedBellmanFord(beta=10.0)
    out_int = np.asarray(layer(costs))
    out_float = np.asarray(layer(costs.astype("float32")))
    assert out_int.dtype == np.float32
    np.testing.assert_allclose(out_int, out_float, rtol=0, atol=0)
    assert 0.0 < out_float.max() <= 1.0 and out_float.min() >= 0.0


def test_newton_target_of_integer_predictions_is_float(rng):
    y_true = rng.normal(size=(3, 4)).astype("float32")
    y_int = rng.integers(-3, 4, size=(3, 4)).astype("int32")
    loss = NewtonLoss("mse", curvature="hessian", tikhonov=0.5)
    z_int = np.asarray(loss.target(y_true, y_int))
    z_float = np.asarray(loss.target(y_true, y_int.astype("float32")))
    assert z_int.dtype == np.float32
    np.testing.assert_allclose(z_int, z_float, rtol=1e-6, atol=1e-6)
    # MSE over m = 4 entries: g = 2 (y - t) / m, H = 2 I / m, so
    # z* = y - (2/m + lambda)^-1 2 (y - t) / m.
    y = y_int.astype(np.float64)
    want = y - (2 * (y - y_true) / 4) / (2 / 4 + 0.5)
    np.testing.assert_allclose(z_int, want, rtol=1e-5, atol=1e-5)

"""Bad costs of the shortest-path solvers (the paths rows of the bad-input table).

Contract (docs/conventions.md, "Grids and paths"): ``+inf`` is a blocked cell, for the
exact solver and for `RelaxedBellmanFord`, eagerly and in graphs; negative and NaN costs
raise a ValueError naming the problem when the costs hold values (eager calls), and
inside a graph they are read as 0 (negative) and as ``+inf`` (NaN). The sampled losses
take the library's non-negative solver wrapper, `nonnegative_shortest_path`.

References are computed another way: a heapq Dijkstra on the grid graph without its
blocked cells, and AlgoVision's relaxed program replayed in float64 NumPy
(`algovision_reference`) with a large finite cost where a cell is blocked.
"""

import heapq
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import algovision_reference as avref
from keras_newton.losses import FenchelYoungLoss, StochasticSmoothingLoss
from keras_newton.paths import (
    OFFSETS,
    RelaxedBellmanFord,
    ShortestPath,
    nonnegative_shortest_path,
    shortest_path,
    solve_shortest_paths,
)

BAD = (r"costs must be non-negative and not NaN \(shortest paths are defined for "
       r"non-negative cell costs; \+inf marks a blocked cell\); received ")
HINT = (r" Perturbed costs and raw model outputs can be negative: "
        r"keras_newton\.paths\.nonnegative_shortest_path clips them at 0\.")
BIG = 1e4  # a finite stand-in for a blocked cell: exp(-beta * BIG) == 0 in float64


def dijkstra(c):
    """Cheapest path cost (both ends counted) through cells of finite cost; inf if none."""
    h, w = c.shape
    if not np.isfinite(c[0, 0]):
        return np.inf
    dist, heap, done = {(0, 0): c[0, 0]}, [(c[0, 0], (0, 0))], set()
    while heap:
        d, (i, j) = heapq.heappop(heap)
        if (i, j) in done:
            continue
        done.add((i, j))
        if (i, j) == (h - 1, w - 1):
            return d
        for di, dj in OFFSETS:
            a, b = i + di, j + dj
            if 0 <= a < h and 0 <= b < w and np.isfinite(c[a, b]):
                if d + c[a, b] < dist.get((a, b), np.inf):
                    dist[a, b] = d + c[a, b]
                    heapq.heappush(heap, (dist[a, b], (a, b)))
    return np.inf


def assert_path(mask):
    """A {0, 1} mask whose cells connect the source to the target, each but the ends
    with exactly two neighbours on the path (a simple path without shortcuts)."""
    h, w = mask.shape
    assert set(np.unique(mask)) <= {0.0, 1.0}
    cells = {(int(i), int(j)) for i, j in zip(*np.nonzero(mask))}
    assert (0, 0) in cells and (h - 1, w - 1) in cells
    for i, j in cells:
        degree = sum((i + di, j + dj) in cells for di, dj in OFFSETS)
        assert degree == (1 if (i, j) in ((0, 0), (h - 1, w - 1)) else 2), sorted(cells)


def read_as_documented(c):
    """The graph contract of the exact solver: negative -> 0, NaN -> +inf."""
    return np.where(c >= 0, c, np.where(c < 0, 0.0, np.inf))


# --- shortest_path on negative or NaN costs ------------------------------------------------


def test_shortest_path_eager_rejects_negative_and_nan_costs():
    costs = np.ones((2, 4, 4), np.float32)
    negative, nan, both = costs.copy(), costs.copy(), costs.copy()
    negative[1, 2, 1] = -2.5
    nan[0, 1, 2] = np.nan
    both[1, 2, 1], both[0, 1, 2], both[0, 3, 0] = -2.5, np.nan, np.nan
    cases = [(negative, r"a minimum of -2\.5\."), (nan, r"1 NaN value\."),
             (both, r"a minimum of -2\.5 and 2 NaN values\.")]
    for bad, received in cases:
        for solve in (shortest_path, ShortestPath(), solve_shortest_paths):
            with pytest.raises(ValueError, match=BAD + received + HINT):
                solve(bad)
    with pytest.raises(ValueError, match=BAD + r"a minimum of -inf\."):
        shortest_path(tf.constant([[[0.0, -np.inf], [1.0, 1.0]]]))


def test_shortest_path_blocks_inf_cells():
    """+inf is valid input: the path avoids the cell, or costs inf where it cannot."""
    rng = np.random.default_rng(0)
    costs = rng.uniform(1.0, 9.0, (3, 4, 4))
    costs[0, 1, 1] = costs[0, 2, 2] = np.inf         # avoidable
    costs[1, :, 2] = np.inf                          # a wall: every path crosses it
    costs[2, 3, 3] = np.inf                          # a blocked target
    masks, total = shortest_path(costs, return_cost=True)
    masks, total = np.asarray(masks), np.asarray(total)
    for m in masks:
        assert_path(m)
    assert masks[0, 1, 1] == masks[0, 2, 2] == 0
    np.testing.assert_allclose(total[0], dijkstra(costs[0]), rtol=1e-6)
    assert np.isinf(total[1]) and np.isinf(total[2])
    # A blocked target is only the last step: the rest is the cheapest path to one of its
    # neighbours, i.e. the optimum with the target's cost set to 0.
    free_target = costs[2].copy()
    free_target[3, 3] = 0.0
    np.testing.assert_allclose(np.sum(masks[2] * free_target), dijkstra(free_target),
                               rtol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_shortest_path_in_a_graph_reads_negative_as_zero_and_nan_as_blocked(jit_compile):
    rng = np.random.default_rng(1)
    costs = rng.uniform(1.0, 9.0, (4, 5, 5)).astype(np.float32)
    costs[0, 1:3, 1:3] = -3.0                      # negative cycles: crashed on main
    costs[1, 2, 2] = np.nan
    costs[1, 1, 1] = np.nan
    costs[2, 0, 3], costs[2, 3, 1], costs[2, 4, 0] = -np.inf, np.nan, -0.5
    costs[3, 0, 0] = np.nan                        # a NaN source: every path costs inf
    solve = tf.function(shortest_path, jit_compile=jit_compile)
    masks, total = solve(tf.constant(costs), return_cost=True)
    masks, total = np.asarray(masks), np.asarray(total)
    read = read_as_documented(costs)
    # The documented reading, given eagerly (where it is valid input), gives the same.
    eager_masks, eager_total = shortest_path(read, return_cost=True)
    np.testing.assert_array_equal(masks, np.asarray(eager_masks))
    np.testing.assert_allclose(total, np.asarray(eager_total), rtol=1e-6)
    for c, m, t in zip(read, masks, total):
        assert_path(m)
        np.testing.assert_allclose(t, dijkstra(c), rtol=1e-6)
        if np.isfinite(t):
            np.testing.assert_allclose(np.sum(np.where(m > 0, c, 0.0)), t, rtol=1e-6)
    assert masks[1, 1, 1] == masks[1, 2, 2] == masks[2, 3, 1] == 0
    assert np.isinf(total[3])


# --- the sampled losses on raw model outputs -----------------------------------------------


@pytest.mark.parametrize("loss_class", [FenchelYoungLoss, StochasticSmoothingLoss])
def test_sampled_loss_examples_use_the_nonnegative_solver(loss_class):
    example = loss_class.__doc__.split("Example:")[1]
    assert "keras_newton.paths.nonnegative_shortest_path(" in example or \
        "keras_newton.paths.nonnegative_shortest_path," in example
    assert not re.search(r"(?<!nonnegative_)shortest_path\b", example)


def raw_model(costs):
    """A Dense model whose raw output is exactly ``costs`` (zero kernel, the costs as
    bias): an unconstrained output layer, negative where ``costs`` is."""
    h, w = costs.shape
    return keras.Sequential([
        keras.Input((2,)),
        keras.layers.Dense(h * w, kernel_initializer="zeros",
                           bias_initializer=keras.initializers.Constant(costs.ravel())),
        keras.layers.Reshape((h, w)),
    ])


# Raw output: -0.5 on the diagonal, 2 to 3 elsewhere. The perturbed costs (sigma 0.1)
# keep the diagonal negative and the rest positive (5 standard deviations), so every
# perturbed shortest path of max(c, 0) is the diagonal, the unique path of cost 0.
RAW = np.random.default_rng(2).uniform(2.0, 3.0, (4, 4)).astype(np.float32)
np.fill_diagonal(RAW, -0.5)
DIAGONAL = np.eye(4, dtype=np.float32)
TRUTH = np.zeros((4, 4), np.float32)
TRUTH[0, :] = TRUTH[:, 3] = 1.0                   # along the top row, down the right side


@keras.saving.register_keras_serializable(package="keras_newton_tests")
def path_l1(y_true, costs):
    """The StochasticSmoothingLoss docstring's example loss."""
    path = nonnegative_shortest_path(costs)
    return keras.ops.sum(keras.ops.abs(path - y_true), axis=(1, 2))


def _loss_and_bias_gradient(loss, graph):
    model = raw_model(RAW)
    x, y_true = np.ones((1, 2), np.float32), TRUTH[None]

    def step():
        with tf.GradientTape() as tape:
            value = loss(y_true, model(x))
        return value, tape.gradient(value, model.layers[0].bias)

    value, grad = (tf.function(step) if graph else step)()
    return float(value), np.asarray(grad).reshape(4, 4)


@pytest.mark.parametrize("graph", [False, True])
def test_fenchel_young_with_the_nonnegative_solver_on_a_raw_output(graph):
    assert dijkstra(np.maximum(RAW, 0)) == 0.0
    loss = FenchelYoungLoss(nonnegative_shortest_path, samples=3, sigma=0.1, seed=0)
    value, grad = _loss_and_bias_gradient(loss, graph)
    # gradient = w* - y_eps(c) = truth - diagonal, exactly (every sample's path is it).
    np.testing.assert_array_equal(grad, TRUTH - DIAGONAL)
    # loss = <c, w*> - E<c + sigma Z, diagonal>: 4 noise terms of sd 0.1, mean of 3.
    np.testing.assert_allclose(value, np.sum(RAW * TRUTH) - np.sum(RAW * DIAGONAL),
                               atol=6 * 0.1 * 2 / np.sqrt(3))
    # The Hessian estimate (NewtonLoss) also solves the unperturbed, negative, costs.
    derivatives = loss.loss_derivatives(TRUTH[None], RAW[None], hessian=True)
    assert np.all(np.isfinite(np.asarray(derivatives.hessian)))


@pytest.mark.parametrize("graph", [False, True])
def test_stochastic_smoothing_with_the_nonnegative_solver_on_a_raw_output(graph):
    smoothed = StochasticSmoothingLoss(path_l1, samples=3, sigma=0.1, seed=0)
    value, grad = _loss_and_bias_gradient(smoothed, graph)
    # Every perturbed path is the diagonal: the loss is its L1 distance to the truth, and
    # the estimate (l(y + sigma eps) - l(y)) eps / sigma vanishes.
    assert value == np.abs(DIAGONAL - TRUTH).sum()
    np.testing.assert_array_equal(grad, np.zeros((4, 4)))
    algorithm = StochasticSmoothingLoss(nonnegative_shortest_path, loss="mse", samples=3,
                                        sigma=0.1, seed=0)
    value, grad = _loss_and_bias_gradient(algorithm, graph)
    # Per-sample MSE (docs/conventions.md): the unreduced (B, H) output summed over H.
    np.testing.assert_allclose(value, np.mean((DIAGONAL - TRUTH) ** 2, axis=-1).sum(),
                               rtol=1e-6)
    np.testing.assert_array_equal(grad, np.zeros((4, 4)))


def test_fenchel_young_with_the_plain_solver_names_the_wrapper_eagerly():
    """The plain solver on a raw output: the eager ValueError, not a gather crash."""
    loss = FenchelYoungLoss(shortest_path, samples=3, sigma=0.1, seed=0)
    with pytest.raises(ValueError, match=BAD + r"a minimum of -0\.\d+\." + HINT):
        loss(TRUTH[None], RAW[None])


# --- RelaxedBellmanFord on negative costs --------------------------------------------------


def test_relaxed_bellman_ford_eager_rejects_negative_and_nan_costs():
    costs = np.ones((1, 4, 4), np.float32)
    negative, nan = costs.copy(), costs.copy()
    negative[0, 1, 2] = -0.7
    nan[0, 2, 2] = np.nan
    for bad, received in ((negative, r"a minimum of -0\.7\."), (nan, r"1 NaN value\.")):
        with pytest.raises(ValueError, match=BAD + received):
            RelaxedBellmanFord()(bad)
        # A model built symbolically checks too when it is called eagerly.
        model = keras.Sequential([keras.Input((4, 4)), RelaxedBellmanFord()])
        with pytest.raises(ValueError, match=BAD + received):
            model(bad)


def _output_and_gradient(layer, costs, graph):
    def run(c):
        with tf.GradientTape() as tape:
            tape.watch(c)
            out = layer(c)
            value = tf.reduce_sum(out * out)
        return out, tape.gradient(value, c)

    out, grad = (tf.function(run) if graph else run)(tf.constant(costs))
    return np.asarray(out), np.asarray(grad)


def test_relaxed_bellman_ford_in_a_graph_reads_negative_costs_as_zero():
    rng = np.random.default_rng(3)
    costs = rng.uniform(0.2, 3.0, (2, 4, 4))
    costs[0, 1:3, 1:3] = -2.0                      # eagerly an error
    costs[1, 3, 0], costs[1, 0, 3] = -np.inf, -0.1
    layer = RelaxedBellmanFord(beta=2.0, dtype="float64")
    out, grad = _output_and_gradient(layer, costs, graph=True)
    # The forward sweeps are the same for both tracebacks: one loop is enough here.
    ref = avref.relaxed_shortest_path(np.maximum(costs, 0.0), 2.0, 9)
    np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-10)
    # Clipped costs get no gradient; the others a finite one.
    assert np.all(np.isfinite(grad)) and np.all(grad[costs < 0] == 0.0)
    assert np.any(grad[costs >= 0] != 0.0)


# --- RelaxedBellmanFord with +inf (blocked) cells ------------------------------------------


def _blocked_costs():
    rng = np.random.default_rng(4)
    costs = rng.uniform(0.5, 3.0, (3, 4, 4))
    costs[0, 1, 2] = np.inf
    costs[1, 1, 1] = costs[1, 2, 2] = np.inf       # the diagonal, twice
    costs[2, 0, 0] = costs[2, 3, 3] = np.inf       # the end cells
    return costs


def _check_blocked(out, grad, costs, loop):
    blocked = ~np.isfinite(costs)                  # +inf, or NaN in a graph
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad))
    # Blocked is the limit of a large finite cost (its softmin weight exp(-beta M) is 0).
    ref = avref.relaxed_shortest_path(np.where(blocked, BIG, costs), 2.0, 9, loop=loop)
    np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-10)
    inner = blocked.copy()
    inner[:, 0, 0] = inner[:, 3, 3] = False
    assert np.all(out[inner] == 0.0)               # no traceback mass enters a blocked cell
    assert np.all(grad[blocked] == 0.0)


@pytest.mark.parametrize("loop", ["for", "while"])
def test_relaxed_bellman_ford_blocks_inf_cells_eagerly(loop):
    costs = _blocked_costs()
    layer = RelaxedBellmanFord(beta=2.0, loop=loop, dtype="float64")
    _check_blocked(*_output_and_gradient(layer, costs, graph=False), costs, loop)


def test_relaxed_bellman_ford_blocks_inf_and_nan_cells_in_a_graph():
    costs = _blocked_costs()
    costs[1, 2, 2] = np.nan                        # a NaN is read as blocked in a graph
    layer = RelaxedBellmanFord(beta=2.0, dtype="float64")
    _check_blocked(*_output_and_gradient(layer, costs, graph=True), costs, "for")


def test_relaxed_bellman_ford_blocked_cells_in_float32_and_walls_stay_finite():
    costs = _blocked_costs().astype(np.float32)
    out = np.asarray(RelaxedBellmanFord(beta=10.0)(costs))
    ref = avref.relaxed_shortest_path(np.where(np.isinf(costs), BIG, costs), 10.0, 9)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    # A wall of blocked cells cuts the target off: finite, but no path (documented).
    costs[:, 2, :] = np.inf
    out = np.asarray(RelaxedBellmanFord(beta=10.0)(costs))
    assert np.all(np.isfinite(out)) and out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_path_metrics_read_negative_predictions_as_zero_in_every_mode(mode):
    from keras_newton.metrics import CostRatio, OptimalCostMatch, PerfectMatch, path_metrics
    from keras_newton.paths import pack_path_targets

    rng = np.random.default_rng(3)
    true_costs = rng.uniform(0.5, 3.0, (6, 5, 5))
    true_paths = np.asarray(shortest_path(true_costs), np.float64)
    pred = true_costs + rng.normal(0.0, 1.5, true_costs.shape)
    assert (pred < 0).any()
    clipped = np.maximum(pred, 0.0)
    # Reference: the exact solver on the clipped (valid) predictions, checked optimal
    # against Dijkstra, priced with the true costs.
    ref_paths = np.asarray(shortest_path(clipped), np.float64)
    np.testing.assert_allclose((ref_paths * clipped).sum(axis=(1, 2)),
                               [dijkstra(c) for c in clipped], rtol=1e-9)
    ref_cost = (ref_paths * true_costs).sum(axis=(1, 2))
    best = (true_paths * true_costs).sum(axis=(1, 2))
    want = {"perfect_match": np.mean(np.all(ref_paths == true_paths, axis=(1, 2))),
            "optimal_cost": np.mean(ref_cost <= best * (1 + 1e-4)),
            "cost_ratio": np.mean(ref_cost / best)}
    y_true = pack_path_targets(true_paths.astype("float32"), true_costs.astype("float32"))
    for name, metric in (("perfect_match", PerfectMatch()),
                         ("optimal_cost", OptimalCostMatch()), ("cost_ratio", CostRatio())):
        update = metric.update_state if mode == "eager" else tf.function(metric.update_state)
        update(y_true, pred.astype("float32"))
        np.testing.assert_allclose(float(metric.result()), want[name], rtol=1e-5)
    got = path_metrics(pred, true_costs, true_paths)
    np.testing.assert_allclose(got["perfect_match"], 100 * want["perfect_match"], rtol=1e-9)
    np.testing.assert_allclose(got["optimal_cost"], 100 * want["optimal_cost"], rtol=1e-9)
    np.testing.assert_allclose(got["cost_ratio"], want["cost_ratio"], rtol=1e-6)

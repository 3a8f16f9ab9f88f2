"""Shortest paths: exact solver, relaxed Bellman-Ford, PathLoss, path metrics.

References are computed another way: scipy's Dijkstra on an explicit graph, brute-force
enumeration of simple paths, and `algovision_reference`, a float64 NumPy replay of
AlgoVision's relaxed shortest-path program (tests/test_bellman_ford_algovision.py checks it
against the algovision package and tests the layer's AlgoVision semantics in detail).
"""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

import algovision_reference as avref
import keras_newton
from keras_newton.losses import PathLoss, hamming_path_loss
from keras_newton.metrics import CostRatio, OptimalCostMatch, PerfectMatch, path_metrics
from keras_newton.paths import (
    OFFSETS,
    RelaxedBellmanFord,
    ShortestPath,
    nonnegative_shortest_path,
    pack_path_targets,
    shortest_path,
)

WARCRAFT = np.array([0.8, 1.2, 5.3, 7.7, 9.2])
CONORMS = ("probabilistic", "hamacher", "yager", "max")


# --- references ---------------------------------------------------------------------------


def _inside(i, j, h, w):
    return 0 <= i < h and 0 <= j < w


def dijkstra_both_ways(c):
    """Distances (both ends counted) from the source and from the target, float64."""
    h, w = c.shape
    rows, cols, data = [], [], []
    for i in range(h):
        for j in range(w):
            for di, dj in OFFSETS:
                if _inside(i + di, j + dj, h, w):
                    rows.append(i * w + j)
                    cols.append((i + di) * w + j + dj)
                    data.append(c[i + di, j + dj])
    # Zero costs are stored explicitly (csr_matrix drops nothing given as data).
    graph = csr_matrix((np.asarray(data) + 0.0, (rows, cols)), shape=(h * w, h * w))
    d = dijkstra(graph, indices=[0, h * w - 1])
    flat = c.ravel()
    return (d[0] + flat[0]).reshape(h, w), (d[1] + flat[-1]).reshape(h, w)


def brute_force_cost(c):
    """Optimal path cost by enumerating every simple 8-neighbour path (tiny grids)."""
    h, w = c.shape
    best = np.inf

    def walk(cell, seen, total):
        nonlocal best
        if total >= best:
            return
        if cell == (h - 1, w - 1):
            best = total
            return
        for di, dj in OFFSETS:
            nxt = (cell[0] + di, cell[1] + dj)
            if _inside(*nxt, h, w) and nxt not in seen:
                walk(nxt, seen | {nxt}, total + c[nxt])

    walk((0, 0), {(0, 0)}, c[0, 0])
    return best


def assert_valid_path(mask):
    """A chain of 8-neighbour steps from (0, 0) to (H-1, W-1) with no shortcuts."""
    h, w = mask.shape
    assert set(np.unique(mask)) <= {0.0, 1.0}
    cells = {(int(i), int(j)) for i, j in zip(*np.nonzero(mask))}
    assert (0, 0) in cells and (h - 1, w - 1) in cells
    if h == w == 1:
        assert cells == {(0, 0)}
        return

    def degree(cell):
        return sum((cell[0] + di, cell[1] + dj) in cells for di, dj in OFFSETS)

    for cell in cells:
        ends = cell in ((0, 0), (h - 1, w - 1))
        assert degree(cell) == (1 if ends else 2), (cell, sorted(cells))
    reached, frontier = {(0, 0)}, [(0, 0)]
    while frontier:
        i, j = frontier.pop()
        for di, dj in OFFSETS:
            nxt = (i + di, j + dj)
            if nxt in cells and nxt not in reached:
                reached.add(nxt)
                frontier.append(nxt)
    assert reached == cells


def relaxed_bf_np(c, beta, iterations=None, loop="for", t_conorm="probabilistic", p=None,
                  max_iterations=None, epsilon=1e-5, absorbing_source=False):
    """AlgoVision's relaxed shortest path of a batch ``(B, H, W)`` or one map ``(H, W)``,
    float64, from `algovision_reference` (the program replayed statement by statement)."""
    c = np.asarray(c, np.float64)
    one = c.ndim == 2
    batch = c[None] if one else c
    steps = iterations or 2 * max(batch.shape[1:]) + 1
    out = avref.relaxed_shortest_path(
        batch, beta, steps, t_conorm, p, loop=loop, absorbing_source=absorbing_source,
        epsilon=epsilon, max_iter=max_iterations or 2**10,
    )
    return out[0] if one else out


def unique_optimum_margin(c):
    """Gap between the optimum and the best path avoiding some optimal cell (0: tie)."""
    d_s, d_t = dijkstra_both_ways(c)
    through = d_s + d_t - c
    best = d_s[-1, -1]
    on = np.isclose(through, best, rtol=0, atol=1e-9)
    off = through[~on]
    return on, (off.min() - best if off.size else np.inf)


# --- exact solver ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(12, 12), (5, 9), (7, 3), (1, 6), (4, 1), (1, 1)])
def test_shortest_path_optimal_and_valid_against_scipy(shape):
    rng = np.random.default_rng(sum(shape))
    costs = np.concatenate([
        rng.uniform(0.0, 10.0, (6,) + shape),
        rng.choice(WARCRAFT, (6,) + shape),           # many ties
        rng.choice([0.0, 0.0, 1.0, 3.0], (4,) + shape),  # zero-cost plateaus
        np.zeros((1,) + shape),
    ]).astype(np.float32)
    masks, totals = shortest_path(costs, return_cost=True)
    masks, totals = np.asarray(masks), np.asarray(totals)
    assert masks.shape == costs.shape and totals.shape == (len(costs),)
    for c, m, total in zip(costs.astype(np.float64), masks, totals):
        optimum = dijkstra_both_ways(c)[0][-1, -1]
        np.testing.assert_allclose(total, optimum, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.sum(m * c), optimum, rtol=1e-5, atol=1e-5)
        assert_valid_path(m)


def test_shortest_path_against_brute_force_on_tiny_grids():
    rng = np.random.default_rng(1)
    for shape in [(3, 3), (3, 4), (2, 5)]:
        costs = rng.uniform(0.1, 5.0, (5,) + shape)
        masks, totals = shortest_path(costs, return_cost=True)
        for c, m, total in zip(costs, np.asarray(masks), np.asarray(totals)):
            best = brute_force_cost(c)
            np.testing.assert_allclose(total, best, rtol=1e-12)
            np.testing.assert_allclose(np.sum(m * c), best, rtol=1e-12)


def test_shortest_path_tie_breaking_is_documented_rule():
    # Uniform 2x3 grid: the cheapest paths have 3 cells, through (0, 1) or (1, 1).
    # Predecessor of (1, 2): tied (0, 1) [up-left] and (1, 1) [left]; up-left comes first.
    costs = np.ones((1, 2, 3), np.float32)
    np.testing.assert_array_equal(
        np.asarray(shortest_path(costs))[0], [[1, 1, 0], [0, 0, 1]]
    )
    # All-zero costs: every path costs 0; the fewest cells is the diagonal.
    zeros = np.zeros((1, 6, 6), np.float32)
    np.testing.assert_array_equal(np.asarray(shortest_path(zeros))[0], np.eye(6))
    # Equal cost, different lengths: a 0-cost detour loses to the direct step.
    c = np.array([[[1, 0, 0], [5, 5, 0], [5, 5, 1]]], np.float32)
    m = np.asarray(shortest_path(c))[0]
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 0, 1], [0, 0, 1]])


def test_shortest_path_graph_mode_and_xla_agree_with_eager():
    rng = np.random.default_rng(2)
    costs = tf.constant(rng.choice(WARCRAFT, (32, 12, 12)).astype(np.float32))
    eager_mask, eager_cost = shortest_path(costs, return_cost=True)
    for fn in (tf.function(shortest_path), tf.function(shortest_path, jit_compile=True)):
        mask, cost = fn(costs, return_cost=True)
        np.testing.assert_array_equal(np.asarray(mask), np.asarray(eager_mask))
        np.testing.assert_allclose(np.asarray(cost), np.asarray(eager_cost), rtol=1e-6)
    # The layer wraps the same solver (`solve_shortest_paths` is tested with the generator).
    np.testing.assert_array_equal(np.asarray(ShortestPath()(costs)), np.asarray(eager_mask))


def test_shortest_path_bad_input():
    with pytest.raises(ValueError, match="costs must have shape"):
        shortest_path(np.ones((3, 4)))
    with pytest.raises(TypeError, match="costs must be a real-valued"):
        shortest_path(np.ones((1, 3, 3), bool))


# --- relaxed Bellman-Ford ---------------------------------------------------------------


@pytest.mark.parametrize("absorbing_source", [False, True])
@pytest.mark.parametrize("loop", ["for", "while"])
@pytest.mark.parametrize("t_conorm,p", [("probabilistic", None), ("hamacher", 2.0),
                                        ("yager", 1.0), ("yager", 2.0), ("max", None)])
def test_relaxed_bellman_ford_matches_numpy_reference(loop, t_conorm, p, absorbing_source):
    rng = np.random.default_rng(3)
    costs = rng.uniform(0.2, 3.0, (2, 4, 5))
    layer = RelaxedBellmanFord(beta=2.0, loop=loop, t_conorm=t_conorm, t_conorm_p=p,
                               absorbing_source=absorbing_source, dtype="float64")
    out = np.asarray(layer(costs))  # float64 in, float64 out
    assert out.dtype == np.float64
    # The whole batch at once: the while loop stops on the batch maximum, as AlgoVision's.
    ref = relaxed_bf_np(costs, 2.0, loop=loop, t_conorm=t_conorm, p=p,
                        absorbing_source=absorbing_source)
    # Same operations in another order: float64 rounding only.
    np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-10)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_relaxed_bellman_ford_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    c = rng.uniform(0.5, 2.0, (3, 3))
    weights = rng.normal(size=(3, 3))
    layer = RelaxedBellmanFord(beta=1.5, iterations=6, loop="for", dtype="float64")
    x = tf.Variable(c[None])
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(layer(x) * weights)
    grad = tape.gradient(value, x).numpy()[0]
    h = 1e-6
    fd = np.zeros_like(c)
    for i, j in itertools.product(range(3), range(3)):
        e = np.zeros_like(c)
        e[i, j] = h
        plus = np.sum(relaxed_bf_np(c + e, 1.5, iterations=6) * weights)
        minus = np.sum(relaxed_bf_np(c - e, 1.5, iterations=6) * weights)
        fd[i, j] = (plus - minus) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


def test_relaxed_bellman_ford_second_derivatives_finite_in_float32():
    """Hessian-vector product (float32, double tape) vs differences of float64 gradients.

    With AlgoVision's 1e12 padding taken literally, float32 second derivatives overflow
    to NaN on 12x12 grids; the layer masks instead.
    """
    rng = np.random.default_rng(10)
    c = rng.uniform(0.5, 9.0, (1, 12, 12))
    v = rng.normal(size=(1, 12, 12))
    true = np.asarray(shortest_path(c))

    def gradient(costs, dtype):
        layer = RelaxedBellmanFord(dtype=dtype)
        with tf.GradientTape() as tape:
            tape.watch(costs)
            value = tf.reduce_sum((layer(costs) - true.astype(dtype)) ** 2)
        return tape.gradient(value, costs)

    x = tf.constant(c.astype("float32"))
    with tf.GradientTape() as outer:
        outer.watch(x)
        gv = tf.reduce_sum(gradient(x, "float32") * v.astype("float32"))
    hvp = outer.gradient(gv, x).numpy()
    h = 1e-5
    fd = (gradient(tf.constant(c + h * v), "float64").numpy()
          - gradient(tf.constant(c - h * v), "float64").numpy()) / (2 * h)
    assert np.all(np.isfinite(hvp))
    np.testing.assert_allclose(hvp, fd, atol=1e-4 * np.abs(fd).max() + 1e-6)


@pytest.mark.parametrize("loop", ["for", "while"])
def test_relaxed_bellman_ford_converges_to_exact_path(loop):
    """With the absorbing source (AlgoVision's default keeps marking a neighbour of the
    source, see tests/test_bellman_ford_algovision.py)."""
    rng = np.random.default_rng(5)
    grids = []
    while len(grids) < 4:  # grids whose optimum is unique, with a clear margin
        c = rng.uniform(0.5, 9.5, (8, 8))
        on, margin = unique_optimum_margin(c)
        if margin > 0.3:
            grids.append(c)
    costs = np.asarray(grids, np.float32)
    exact = np.asarray(shortest_path(costs))
    errors = []
    for beta in (1.0, 10.0, 100.0):
        layer = RelaxedBellmanFord(beta=beta, loop=loop, absorbing_source=True)
        soft = np.asarray(layer(costs))
        assert soft.min() >= 0.0 and soft.max() <= 1.0
        errors.append(np.abs(soft - exact).max())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3
    assert errors[0] > 0.1


def test_relaxed_bellman_ford_xla_and_serialization(tmp_path):
    rng = np.random.default_rng(6)
    costs = rng.uniform(0.5, 9.0, (3, 12, 12)).astype(np.float32)
    for loop in ("for", "while"):
        layer = RelaxedBellmanFord(beta=10.0, loop=loop, t_conorm="hamacher", t_conorm_p=3.0)
        eager = np.asarray(layer(costs))
        xla = tf.function(lambda c: layer(c), jit_compile=True)(costs).numpy()
        np.testing.assert_allclose(xla, eager, atol=1e-4)  # float32, fused differently
        if loop == "for":
            continue
        model = keras.Sequential([keras.Input((12, 12)), layer])
        path = str(tmp_path / "rbf.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        np.testing.assert_allclose(np.asarray(loaded(costs)), eager, atol=1e-6)
        assert loaded.layers[-1].get_config()["t_conorm_p"] == 3.0


def test_relaxed_bellman_ford_bad_arguments():
    with pytest.raises(ValueError, match="loop"):
        RelaxedBellmanFord(loop="until")
    with pytest.raises(ValueError, match="t_conorm"):
        RelaxedBellmanFord(t_conorm="lukasiewicz")
    with pytest.raises(ValueError, match="beta"):
        RelaxedBellmanFord(beta=0.0)
    with pytest.raises(ValueError, match="t_conorm_p"):
        RelaxedBellmanFord(t_conorm="probabilistic", t_conorm_p=2.0)
    with pytest.raises(ValueError, match="t_conorm_p"):
        RelaxedBellmanFord(t_conorm="yager", t_conorm_p=0.5)
    with pytest.raises(TypeError, match="iterations"):
        RelaxedBellmanFord(iterations=2.5)
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        RelaxedBellmanFord()(np.ones((2, 3, 3, 1), np.float32))


# --- PathLoss --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["l1", "l2"])
@pytest.mark.parametrize("aggregate", ["mean", "sum"])
def test_path_loss_against_numpy(kind, aggregate):
    rng = np.random.default_rng(7)
    soft = rng.uniform(0, 1, (4, 5, 6))
    true = (rng.uniform(size=(4, 5, 6)) < 0.3).astype(np.float64)
    diff = soft - true
    cell = np.abs(diff) if kind == "l1" else diff**2
    per_map = cell.mean(axis=(1, 2)) if aggregate == "mean" else cell.sum(axis=(1, 2))
    loss = PathLoss(kind, aggregate=aggregate)
    np.testing.assert_allclose(np.asarray(loss.call(true, soft)), per_map, rtol=1e-12)
    np.testing.assert_allclose(float(loss(true, soft)), per_map.mean(), rtol=1e-6)  # float32
    # Packed targets (path + costs) give the same loss.
    packed = pack_path_targets(true, rng.uniform(1, 2, true.shape))
    np.testing.assert_allclose(np.asarray(loss.call(packed, soft)), per_map, rtol=1e-12)


def test_nonnegative_solver_and_hamming_loss_against_brute_force():
    """Negative (perturbed) costs are clipped to zero before the exact solver: the path is
    optimal for max(c, 0) by exhaustive enumeration, and the Hamming loss is the mean
    absolute difference of that path to the true one, per map."""
    rng = np.random.default_rng(11)
    costs = rng.normal(0.5, 1.0, size=(6, 3, 3))
    assert (costs < 0).any()
    paths = np.asarray(keras.ops.convert_to_numpy(nonnegative_shortest_path(costs)))
    clipped = np.maximum(costs, 0.0)
    for c, mask in zip(clipped, paths):
        assert_valid_path(mask)
        np.testing.assert_allclose(np.sum(c * mask), brute_force_cost(c), atol=1e-6)
    truth = np.zeros((6, 3, 3))
    truth[:, [0, 1, 2], [0, 1, 2]] = 1
    loss = np.asarray(keras.ops.convert_to_numpy(hamming_path_loss(truth, costs)))
    np.testing.assert_allclose(loss, np.abs(paths - truth).mean(axis=(1, 2)), rtol=1e-6)


def test_path_loss_with_relaxation_composes():
    rng = np.random.default_rng(8)
    costs = rng.uniform(0.5, 3.0, (2, 4, 4))
    true = np.asarray(shortest_path(costs))
    relax = RelaxedBellmanFord(beta=3.0, dtype="float64")
    loss = PathLoss("l2", relaxation=relax)
    ref = np.array([np.mean((relaxed_bf_np(c, 3.0) - t) ** 2) for c, t in zip(costs, true)])
    np.testing.assert_allclose(np.asarray(loss.call(true, costs)), ref, rtol=1e-9)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored.relaxation, RelaxedBellmanFord)
    assert restored.relaxation.beta == 3.0 and restored.kind == "l2"
    np.testing.assert_allclose(np.asarray(restored.call(true, costs)), ref, rtol=1e-9)
    with pytest.raises(ValueError, match="kind"):
        PathLoss("l3")
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        PathLoss("l1").call(true, costs[:, :3])


def test_newton_loss_fisher_target_over_relaxed_path_loss():
    """z* = y - (mean_i g_i g_i^T + lambda I)^-1 g_i with g from float64 finite differences."""
    rng = np.random.default_rng(9)
    costs = rng.uniform(0.5, 3.0, (3, 3, 3))
    true = np.asarray(shortest_path(rng.uniform(0.5, 3.0, (3, 3, 3))))
    beta, lam = 2.0, 0.1
    base = PathLoss("l2", relaxation=RelaxedBellmanFord(beta=beta, iterations=7,
                                                         dtype="float64"))
    newton = keras_newton.NewtonLoss(base, curvature="fisher", tikhonov=lam)
    z = np.asarray(newton.target(true, costs))

    def loss_np(c, t):
        return np.mean((relaxed_bf_np(c.reshape(3, 3), beta, iterations=7) - t) ** 2)

    h = 1e-6
    grads = []
    for c, t in zip(costs, true):
        g = np.zeros(9)
        for j in range(9):
            e = np.zeros(9)
            e[j] = h
            g[j] = (loss_np(c.ravel() + e, t) - loss_np(c.ravel() - e, t)) / (2 * h)
        grads.append(g)
    grads = np.asarray(grads)
    fisher = grads.T @ grads / len(grads)
    ref = costs.reshape(3, 9) - np.linalg.solve(fisher + lam * np.eye(9), grads.T).T
    np.testing.assert_allclose(z.reshape(3, 9), ref, rtol=1e-5, atol=1e-7)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(newton))
    np.testing.assert_allclose(np.asarray(restored.target(true, costs)), z, rtol=1e-9)


# --- metrics ---------------------------------------------------------------------------


def _metric_case():
    """Hand-built 3x3 maps: true costs, true path, and three predictions."""
    true_costs = np.array([
        [[1, 1, 1], [1, 9, 1], [1, 1, 1]],   # two optimal paths of cost 4 around the 9
        [[1, 1, 1], [1, 9, 1], [1, 1, 1]],
        [[1, 1, 1], [1, 9, 1], [1, 1, 1]],
    ], np.float64)
    true_paths = np.array([[[1, 1, 0], [0, 0, 1], [0, 0, 1]]] * 3, np.float64)
    pred = np.array([
        [[1, 1, 1], [9, 9, 1], [9, 9, 1]],   # exactly the true path: cost 4
        [[1, 9, 9], [1, 9, 9], [1, 1, 1]],   # the other optimal path: cost 4
        [[1, 9, 9], [9, 1, 9], [9, 9, 1]],   # through the centre: cost 1 + 9 + 1 = 11
    ], np.float32)
    return true_costs, true_paths, pred


def test_path_metrics_on_hand_built_cases():
    true_costs, true_paths, pred = _metric_case()
    y_true = pack_path_targets(true_paths, true_costs)
    expected = {
        PerfectMatch: [1.0, 0.0, 0.0],
        OptimalCostMatch: [1.0, 1.0, 0.0],
        CostRatio: [1.0, 1.0, 11.0 / 4.0],
    }
    for cls, values in expected.items():
        metric = cls()
        for i in range(3):
            metric.update_state(y_true[i : i + 1], pred[i : i + 1])
        np.testing.assert_allclose(float(metric.result()), np.mean(values), rtol=1e-6)
        restored = cls.from_config(metric.get_config())
        restored.update_state(y_true, pred)
        np.testing.assert_allclose(float(restored.result()), np.mean(values), rtol=1e-6)
    # Perfect match works on paths alone; the cost metrics need the costs.
    metric = PerfectMatch()
    metric.update_state(true_paths, pred)
    np.testing.assert_allclose(float(metric.result()), 1 / 3, rtol=1e-6)
    with pytest.raises(ValueError, match="pack_path_targets"):
        OptimalCostMatch().update_state(true_paths, pred)
    scores = path_metrics(pred, true_costs, true_paths)
    np.testing.assert_allclose(scores["perfect_match"], 100 / 3, rtol=1e-9)
    np.testing.assert_allclose(scores["optimal_cost"], 200 / 3, rtol=1e-9)
    np.testing.assert_allclose(scores["cost_ratio"], (1 + 1 + 11 / 4) / 3, rtol=1e-9)


def test_path_metrics_in_model_fit():
    """Costs model + relaxed path loss + metrics, with packed targets, in `fit`/`evaluate`."""
    true_costs, true_paths, pred = _metric_case()
    y = pack_path_targets(true_paths, true_costs)
    x = pred.reshape(3, 9)
    model = keras.Sequential([
        keras.Input((9,)),
        keras.layers.Dense(9, kernel_initializer="identity", bias_initializer="zeros"),
        keras.layers.Reshape((3, 3)),
    ])
    model.compile(
        optimizer=keras.optimizers.SGD(0.0),
        jit_compile=False,  # XLA is tested above; compiling here only costs time
        loss=keras_newton.NewtonLoss(PathLoss("l1", relaxation=RelaxedBellmanFord()),
                                     curvature="fisher"),
        metrics=[PerfectMatch(), OptimalCostMatch(), CostRatio()],
    )
    # Learning rate 0: the costs stay `pred`, and the epoch's metrics are those of `pred`.
    result = {k: v[-1] for k, v in model.fit(x, y, batch_size=3, verbose=0).history.items()}
    np.testing.assert_allclose(result["perfect_match"], 1 / 3, rtol=1e-5)
    np.testing.assert_allclose(result["optimal_cost_match"], 2 / 3, rtol=1e-5)
    np.testing.assert_allclose(result["cost_ratio"], (1 + 1 + 11 / 4) / 3, rtol=1e-5)
    assert np.isfinite(result["loss"])

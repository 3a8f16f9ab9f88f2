"""Exact shortest paths on batches of vertex-weighted grids, in `keras.ops`.

The labels of the Warcraft benchmark (Vlastelica et al., ICLR 2020) are vertex-weighted
Dijkstra shortest paths on 12x12 grids with the 8-neighbourhood, from the top-left to the
bottom-right cell, both end cells counted. This solver gives the same optima for a whole
batch at once, without a Python loop per map, so that it runs inside a training step, in
graph mode and under XLA.

Algorithm: Bellman-Ford in the min-plus semiring, all maps in parallel. With ``D[v]`` the
cost of the cheapest path from the source to ``v`` (both ends counted),

    D[source] = c[source],     D[v] = c[v] + min_{u in N8(v)} D[u],

iterated from ``D = inf`` (except at the source) until no value changes (a
`keras.ops.while_loop`, bounded by ``H * W`` sweeps; a sweep relaxes every cell at once).
Along with ``D`` each cell keeps the hop count ``n[v]`` of its path, minimised among the
neighbours that attain the minimum: the iteration is Bellman-Ford for the lexicographic
order on ``(D, n)``, which converges to the cheapest path with the fewest cells. A path is
then read back from the target along predecessors, all maps in parallel (a second
`while_loop`, bounded by ``H * W`` steps).

Tie-breaking (deterministic): the predecessor of ``v`` is, among its neighbours ``u`` with
the smallest ``D[u]``, one with the smallest hop count ``n[u]``, and among those the first
in the order of `keras_newton.paths.grid.OFFSETS` (up-left, up, up-right, left, right,
down-left, down, down-right). Comparing hop counts also makes the traceback terminate
with zero costs, where equal distances could otherwise form predecessor cycles. Floating
point ties are exact equalities of the float distances.
"""

import keras
from keras import ops

from keras_newton import _checks
from keras_newton.paths.grid import OFFSETS
from keras_newton.paths.grid import check_costs
from keras_newton.paths.grid import grid_shape
from keras_newton.paths.grid import neighbours

__all__ = ["nonnegative_shortest_path", "shortest_path"]


def _as_costs(costs):
    costs = ops.convert_to_tensor(costs)
    dtype = keras.backend.standardize_dtype(costs.dtype)
    if dtype == "bool" or not (dtype.startswith("float") or dtype.startswith("int")
                               or dtype.startswith("uint")):
        raise TypeError(
            f"costs must be a real-valued tensor of shape (B, H, W); received dtype "
            f"{dtype}."
        )
    if dtype != "float64":
        costs = ops.cast(costs, "float32")
    return costs


_NEGATIVE_HINT = ("Perturbed costs and raw model outputs can be negative: "
                  "keras_newton.paths.nonnegative_shortest_path clips them at 0.")


def _read_bad_costs(costs):
    """The graph contract of `shortest_path`: negative -> 0, NaN -> +inf (blocked).

    Valid costs (``>= 0``, ``+inf`` included) pass unchanged; two comparisons and two
    selections, elementwise.
    """
    inf = ops.cast(float("inf"), costs.dtype)
    return ops.where(costs >= 0, costs, ops.where(costs < 0, ops.zeros_like(costs), inf))


def _relax(costs, h, w):
    """Converged distances ``(B, H, W)`` and hop counts ``(B, H, W)`` (int32)."""
    dtype = costs.dtype
    n_cells = h * w
    big = n_cells + 1  # a hop count larger than any path's
    inf = ops.cast(float("inf"), dtype)
    source = ops.reshape(ops.one_hot(0, n_cells, dtype="bool"), (1, h, w))
    dist0 = ops.where(source, costs, inf)
    hops0 = ops.where(source, 0, big)
    hops0 = ops.cast(ops.broadcast_to(hops0, ops.shape(costs)), "int32")

    def sweep(dist, hops):
        nd = neighbours(dist, float("inf"))
        nh = neighbours(hops, big)
        best = ops.min(nd, axis=-1)
        tight = ops.equal(nd, best[..., None])
        best_hops = ops.min(ops.where(tight, nh, big), axis=-1)
        new_dist = ops.where(source, costs, best + costs)
        new_hops = ops.where(source, 0, ops.minimum(best_hops + 1, big))
        return new_dist, new_hops

    def cond(i, dist, hops, changed):
        return changed

    def body(i, dist, hops, changed):
        new_dist, new_hops = sweep(dist, hops)
        changed = ops.logical_or(
            ops.any(ops.not_equal(new_dist, dist)), ops.any(ops.not_equal(new_hops, hops))
        )
        return i + 1, new_dist, new_hops, changed

    _, dist, hops, _ = ops.while_loop(
        cond,
        body,
        (ops.convert_to_tensor(0, "int32"), dist0, hops0, ops.convert_to_tensor(True)),
        maximum_iterations=n_cells + 1,
    )
    return dist, hops


def _predecessors(dist, hops, h, w):
    """Flat index ``(B, H * W)`` of every cell's predecessor (the source points to itself)."""
    big = h * w + 1
    nd = neighbours(dist, float("inf"))
    nh = neighbours(hops, big)
    best = ops.min(nd, axis=-1)
    chosen = ops.logical_and(
        ops.equal(nd, best[..., None]), ops.equal(nh, (hops - 1)[..., None])
    )
    k_index = ops.arange(len(OFFSETS), dtype="int32")
    k = ops.min(ops.where(chosen, k_index, len(OFFSETS)), axis=-1)
    k = ops.minimum(k, len(OFFSETS) - 1)  # only the source has no chosen neighbour
    flat_offsets = ops.convert_to_tensor([di * w + dj for di, dj in OFFSETS], "int32")
    cell = ops.reshape(ops.arange(h * w, dtype="int32"), (1, h, w))
    pred = cell + ops.take(flat_offsets, k)
    pred = ops.where(ops.equal(cell, 0), 0, pred)
    return ops.reshape(pred, (-1, h * w))


def _traceback(pred, h, w):
    """Path masks ``(B, H * W)`` following ``pred`` from the target to the source."""
    n_cells = h * w
    batch = ops.shape(pred)[0]
    pos0 = ops.full((batch,), n_cells - 1, dtype="int32")
    mask0 = ops.one_hot(pos0, n_cells, dtype=pred.dtype)

    def cond(pos, mask):
        return ops.any(ops.not_equal(pos, 0))

    def body(pos, mask):
        pos = ops.squeeze(ops.take_along_axis(pred, pos[:, None], axis=1), axis=1)
        mask = ops.maximum(mask, ops.one_hot(pos, n_cells, dtype=mask.dtype))
        return pos, mask

    _, mask = ops.while_loop(cond, body, (pos0, mask0), maximum_iterations=n_cells)
    return mask


def shortest_path(costs, return_cost=False):
    """Exact shortest paths of a batch of vertex-weighted grids (8-neighbourhood).

    For non-negative costs ``c`` of shape ``(B, H, W)`` returns, per map, the mask of a
    path from ``(0, 0)`` to ``(H - 1, W - 1)`` through 8-neighbour steps that minimises

        cost(path) = sum_{v in path} c[v]          (both end cells counted)

    (the labels of Vlastelica et al., ICLR 2020). Among paths of equal cost, one with the
    fewest cells is returned; the remaining ties are broken by the neighbour order of
    `keras_newton.paths.grid.OFFSETS` (see the module docstring), so the result is
    deterministic. Batched Bellman-Ford in `keras.ops` with a convergence check, then a
    vectorised traceback: no Python loop per map; it runs eagerly, in graph mode and
    under XLA (``tf.function(jit_compile=True)``). No gradient flows through the mask.

    Bad costs (docs/conventions.md, "Grids and paths"):

    - ``+inf`` is a valid cost: a **blocked** cell. No path goes through it unless every
      path must (a blocked end cell, or a wall of blocked cells); then the path cost is
      ``inf`` and the mask is still a valid path.
    - Negative and NaN costs are invalid. Called eagerly, the function raises a
      ValueError naming the smallest cost and the number of NaNs. Inside a graph
      (``tf.function``, XLA, ``jax.jit``), where values cannot be inspected, the result
      is defined instead: a negative cost (``-inf`` included) is read as 0, a NaN as
      ``+inf`` (blocked); the mask is a valid path for these costs and ``return_cost``
      gives their path cost. Perturbed costs and raw model outputs can be negative: use
      `nonnegative_shortest_path`, which clips them at 0 in every mode.

    Args:
        costs: ``(B, H, W)`` tensor or array of non-negative costs (``+inf``: blocked),
            ``H`` and ``W`` static. Computed in float32 (float64 stays float64).
        return_cost: also return the cost of each path, ``(B,)``.

    Returns:
        The path masks ``(B, H, W)`` in {0, 1}, in the compute dtype; with
        ``return_cost=True`` the tuple ``(masks, path_costs)``.

    Raises:
        ValueError: eagerly, for negative or NaN costs; for a shape other than
            ``(B, H, W)``.
        TypeError: for costs that are not real numbers.

    Example:

    ```python
    costs = np.random.default_rng(0).uniform(0.5, 9.0, (1000, 12, 12))
    paths, total = keras_newton.paths.shortest_path(costs, return_cost=True)
    # the same, compiled:
    solve = tf.function(keras_newton.paths.shortest_path, jit_compile=True)
    ```
    """
    costs = _as_costs(costs)
    h, w = grid_shape(costs)
    costs = ops.stop_gradient(costs)
    check_costs(costs, hint=_NEGATIVE_HINT)
    costs = _read_bad_costs(costs)
    dist, hops = _relax(costs, h, w)
    pred = _predecessors(dist, hops, h, w)
    mask = ops.reshape(_traceback(pred, h, w), ops.shape(costs))
    mask = ops.cast(mask, costs.dtype)
    if return_cost:
        return mask, dist[:, h - 1, w - 1]
    return mask


@keras.saving.register_keras_serializable(package="keras_newton")
def nonnegative_shortest_path(costs):
    """Exact shortest path of ``max(costs, 0)``: the solver of the sampled losses.

    Perturbed costs ``c + sigma * eps`` (stochastic smoothing, Fenchel-Young) and raw
    model outputs can dip below zero, where a shortest path is not defined by the
    solver's conventions (costs non-negative; docs/conventions.md,
    "Grids and paths") and where `shortest_path` raises eagerly; this clips them to zero
    first, in every mode: ``nonnegative_shortest_path(c) = shortest_path(max(c, 0))``, a
    ``(B, H, W)`` mask. ``+inf`` stays a blocked cell. NaN is not clipped: it follows
    `shortest_path`'s contract (a ValueError eagerly, a blocked cell inside a graph).
    Registered for Keras serialization, so that a loss holding it (e.g. a saved
    `keras_newton.losses.FenchelYoungLoss`) loads after ``import keras_newton``.

    Example:

    ```python
    loss = keras_newton.losses.FenchelYoungLoss(nonnegative_shortest_path, samples=10,
                                                sigma=0.1)
    ```
    """
    costs = _as_costs(costs)
    return shortest_path(ops.where(costs < 0, ops.zeros_like(costs), costs))


@keras.saving.register_keras_serializable(package="keras_newton")
class ShortestPath(keras.layers.Layer):
    """Exact shortest path as a layer: costs ``(B, H, W)`` -> path mask ``(B, H, W)``.

    Wraps `shortest_path` (vertex-weighted, 8-neighbourhood, ``(0, 0)`` to
    ``(H - 1, W - 1)``, both ends counted; deterministic tie-breaking). It has no
    gradient: use it for evaluation and inference, `RelaxedBellmanFord` for training.
    Bad costs follow `shortest_path`'s contract: ``+inf`` is a blocked cell; negative or
    NaN costs raise a ValueError when the layer is called eagerly, and inside a graph
    (``model.predict`` on TensorFlow and JAX) a negative cost is read as 0, a NaN as
    blocked.

    Example:

    ```python
    inference = keras.Sequential([comb_resnet18(), ShortestPath()])
    paths = inference.predict(images)
    ```
    """

    def call(self, costs):
        return ops.cast(shortest_path(costs), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


_SOLVERS = {}


def solve_shortest_paths(costs, batch_size=1000, return_cost=False):
    """Exact shortest paths of many maps, numpy in and out, XLA-compiled where possible.

    Runs `shortest_path` through a cached Keras model (``jit_compile=True``) in batches:
    much faster than eager execution for data sets (labels, evaluation). The costs are
    numpy values, so they are checked as in an eager `shortest_path` call: negative or
    NaN costs raise a ValueError; ``+inf`` is a blocked cell.

    Args:
        costs: array ``(N, H, W)`` of non-negative costs (``+inf``: blocked).
        batch_size: maps per compiled call.
        return_cost: also return the path costs ``(N,)`` (float64 sums of the costs on
            each path).

    Returns:
        float32 masks ``(N, H, W)`` in {0, 1}; with ``return_cost`` ``(masks, costs)``.

    Example:

    ```python
    paths = solve_shortest_paths(np.random.default_rng(0).uniform(0, 9, (10000, 12, 12)))
    ```
    """
    import numpy as np

    costs = np.asarray(costs, np.float32)
    if costs.ndim != 3 or costs.shape[1] < 1 or costs.shape[2] < 1:
        raise ValueError(f"costs must have shape (N, H, W); received {costs.shape}.")
    check_costs(costs, hint=_NEGATIVE_HINT)
    batch_size = _checks.check_positive_int("batch_size", batch_size)
    key = costs.shape[1:]
    if key not in _SOLVERS:
        model = keras.Sequential([keras.Input(key), ShortestPath(dtype="float32")])
        model.compile(jit_compile=keras.backend.backend() != "numpy")
        _SOLVERS[key] = model
    n = len(costs)
    # Pad to whole batches: one batch shape, one compilation.
    batch_size = min(batch_size, max(n, 1))
    padded = np.zeros((-(-n // batch_size) * batch_size,) + key, np.float32)
    padded[:n] = costs
    masks = np.zeros(costs.shape, np.float32)
    if n:
        masks[:] = _SOLVERS[key].predict(padded, batch_size=batch_size, verbose=0)[:n]
    if return_cost:
        return masks, np.sum(masks * costs.astype(np.float64), axis=(1, 2))
    return masks

"""Speed of `keras_newton.paths.shortest_path` against `scipy.sparse.csgraph.dijkstra`.

Both solve the same batch of vertex-weighted 12x12 grids (8-neighbourhood, path from the
top-left to the bottom-right cell, both end cells counted) and return the path masks.

- scipy: per map, build the directed graph (edge ``u -> v`` weighs ``c[v]``, the cost of
  the entered cell; the start cost is added to the distance), run Dijkstra from the source
  with predecessors, read the path back. The edge pattern is shared and built once; each
  map's sparse matrix is built in the timed loop.
- keras-newton: the whole batch in one call of the XLA-compiled solver
  (``tf.function(jit_compile=True)``), timed after a warm-up call; graph mode without XLA
  is timed too, for information.

Path costs are checked to agree before any time is reported. Prints maps per second and
the ratio (ours / scipy; > 1 means faster), all measured in the same run.

    python benchmarks/shortest_path_speed.py [--maps 1000] [--grid 12] [--repeats 5]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from scipy.sparse import csr_matrix  # noqa: E402
from scipy.sparse.csgraph import dijkstra  # noqa: E402

from keras_newton.paths import shortest_path  # noqa: E402

WARCRAFT_COSTS = np.array([0.8, 1.2, 5.3, 7.7, 9.2])


def edge_pattern(h, w):
    """Rows and columns of the directed 8-neighbour edges of an ``h x w`` grid."""
    rows, cols = [], []
    for i in range(h):
        for j in range(w):
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    a, b = i + di, j + dj
                    if (di or dj) and 0 <= a < h and 0 <= b < w:
                        rows.append(i * w + j)
                        cols.append(a * w + b)
    return np.asarray(rows), np.asarray(cols)


def scipy_paths(costs, rows, cols):
    """Path masks and costs, one scipy Dijkstra per map, graph building included."""
    n_maps, h, w = costs.shape
    n = h * w
    masks = np.zeros((n_maps, n))
    totals = np.zeros(n_maps)
    for m in range(n_maps):
        flat = costs[m].ravel()
        graph = csr_matrix((flat[cols], (rows, cols)), shape=(n, n))
        dist, pred = dijkstra(graph, indices=0, return_predecessors=True)
        totals[m] = dist[n - 1] + flat[0]
        v = n - 1
        while v >= 0:
            masks[m, v] = 1.0
            v = pred[v]
    return masks.reshape(costs.shape), totals


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", type=int, default=1000)
    parser.add_argument("--grid", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    # Warcraft-like costs: the five terrain costs, in float32 as a network would give them.
    costs = rng.choice(WARCRAFT_COSTS, size=(args.maps, args.grid, args.grid))
    costs = costs.astype(np.float32)
    rows, cols = edge_pattern(args.grid, args.grid)

    xla = tf.function(shortest_path, jit_compile=True)
    graph = tf.function(shortest_path)
    x = tf.constant(costs)

    # Agreement first (optimal costs; masks may differ where optima tie).
    _, ref_cost = scipy_paths(costs.astype(np.float64), rows, cols)
    ours_mask, ours_cost = xla(x, return_cost=True)
    err = np.max(np.abs(np.asarray(ours_cost, np.float64) - ref_cost))
    mask_cost = np.sum(np.asarray(ours_mask, np.float64) * costs, axis=(1, 2))
    err = max(err, np.max(np.abs(mask_cost - ref_cost)))
    if err > 1e-3:
        raise SystemExit(f"solvers disagree on path costs: max |diff| = {err}")

    def run_xla():
        np.asarray(xla(x))

    def run_graph():
        np.asarray(graph(x))

    run_xla()  # warm-up: tracing and compilation
    run_graph()
    t_scipy = best_time(lambda: scipy_paths(costs, rows, cols), max(1, args.repeats // 2))
    t_xla = best_time(run_xla, args.repeats)
    t_graph = best_time(run_graph, args.repeats)

    n = args.maps
    print(f"{n} maps of {args.grid}x{args.grid}, best of {args.repeats} runs; "
          f"max |cost difference| to scipy: {err:.2e}")
    print(f"  scipy dijkstra (graph building included): {n / t_scipy:10.0f} maps/s")
    print(f"  keras-newton, graph mode:                 {n / t_graph:10.0f} maps/s")
    print(f"  keras-newton, XLA:                        {n / t_xla:10.0f} maps/s")
    print(f"ratio XLA / scipy: {t_scipy / t_xla:.1f}x   "
          f"(graph mode / scipy: {t_scipy / t_graph:.1f}x)")


if __name__ == "__main__":
    main()

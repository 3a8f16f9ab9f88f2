"""Shortest paths on grids: the exact batched solver and AlgoVision's relaxed Bellman-Ford.

Conventions (docs/conventions.md): costs ``(B, H, W)`` non-negative, vertex-weighted,
8-neighbourhood, path from ``(0, 0)`` to ``(H - 1, W - 1)``, both end cells counted; a path
is a ``(B, H, W)`` mask in {0, 1}, relaxed paths take values in [0, 1].
"""

from keras_newton.paths.bellman_ford import RelaxedBellmanFord
from keras_newton.paths.bellman_ford import t_conorm
from keras_newton.paths.exact import ShortestPath
from keras_newton.paths.exact import nonnegative_shortest_path
from keras_newton.paths.exact import shortest_path
from keras_newton.paths.exact import solve_shortest_paths
from keras_newton.paths.grid import OFFSETS
from keras_newton.paths.targets import pack_path_targets
from keras_newton.paths.targets import unpack_path_targets

__all__ = [
    "OFFSETS",
    "RelaxedBellmanFord",
    "ShortestPath",
    "nonnegative_shortest_path",
    "pack_path_targets",
    "shortest_path",
    "solve_shortest_paths",
    "t_conorm",
    "unpack_path_targets",
]

"""The 8-neighbourhood of a grid graph, shared by the exact and the relaxed solvers.

Conventions (docs/conventions.md): costs ``(B, H, W)``, vertex-weighted, 8-neighbourhood, paths from
``(0, 0)`` to ``(H - 1, W - 1)``. Neighbour ``k`` of cell ``(i, j)`` is
``(i + di, j + dj)`` with ``(di, dj) = OFFSETS[k]``, in row-major order of the 3x3 window
without its centre: up-left, up, up-right, left, right, down-left, down, down-right. This
order is also the tie-breaking order of the exact solver.
"""

from keras import ops

OFFSETS = (
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, -1),
    (0, 1),
    (1, -1),
    (1, 0),
    (1, 1),
)


def grid_shape(costs, name="costs"):
    """Static ``(H, W)`` of a ``(B, H, W)`` tensor; raises a ValueError otherwise."""
    shape = tuple(costs.shape)
    if len(shape) != 3:
        raise ValueError(
            f"{name} must have shape (B, H, W) (a batch of cost grids); received shape "
            f"{shape}."
        )
    h, w = shape[1], shape[2]
    if h is None or w is None:
        raise ValueError(
            f"{name} must have a static grid size (H, W); received shape {shape}."
        )
    if h < 1 or w < 1:
        raise ValueError(f"{name} must have a non-empty grid; received shape {shape}.")
    return int(h), int(w)


def neighbours(x, fill):
    """Values of the 8 neighbours of every cell: ``(B, H, W)`` -> ``(B, H, W, 8)``.

    ``out[b, i, j, k] = x[b, i + di_k, j + dj_k]``, or ``fill`` outside the grid.
    """
    h, w = int(x.shape[1]), int(x.shape[2])
    padded = ops.pad(x, ((0, 0), (1, 1), (1, 1)), constant_values=fill)
    return ops.stack(
        [padded[:, 1 + di : 1 + di + h, 1 + dj : 1 + dj + w] for di, dj in OFFSETS],
        axis=-1,
    )


def transport(mass):
    """Moves mass along directions: ``(B, H, W, 8)`` -> ``(B, H, W)``.

    ``mass[b, i, j, k]`` leaves cell ``(i, j)`` for its neighbour ``k``; the result holds,
    at each cell, the mass that arrived there. Mass sent outside the grid is dropped
    (a predecessor distribution gives it zero weight).
    """
    h, w = int(mass.shape[1]), int(mass.shape[2])
    padded = ops.pad(mass, ((0, 0), (1, 1), (1, 1), (0, 0)))
    total = None
    for k, (di, dj) in enumerate(OFFSETS):
        part = padded[:, 1 - di : 1 - di + h, 1 - dj : 1 - dj + w, k]
        total = part if total is None else total + part
    return total

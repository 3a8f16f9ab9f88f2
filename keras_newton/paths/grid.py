"""The 8-neighbourhood of a grid graph, shared by the exact and the relaxed solvers.

Conventions (docs/conventions.md): costs ``(B, H, W)``, vertex-weighted, 8-neighbourhood, paths from
``(0, 0)`` to ``(H - 1, W - 1)``. Neighbour ``k`` of cell ``(i, j)`` is
``(i + di, j + dj)`` with ``(di, dj) = OFFSETS[k]``, in row-major order of the 3x3 window
without its centre: up-left, up, up-right, left, right, down-left, down, down-right. This
order is also the tie-breaking order of the exact solver.

Bad costs (docs/conventions.md, "Grids and paths"): `check_costs` rejects negative and
NaN costs with a ValueError when the costs hold values (eager execution); inside a graph
(``tf.function``, ``jax.jit``, a symbolic Keras call) nothing can be inspected, and each
solver documents the defined result it gives instead. ``+inf`` is a valid cost: a blocked
cell.
"""

import keras
import numpy as np
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


def holds_values(x):
    """Whether ``x`` holds concrete values now (eager execution), not a traced tensor.

    False inside a TensorFlow graph (``tf.function``, ``model.fit`` without
    ``run_eagerly``), for a JAX tracer (``jax.jit``, ``jax.grad``...), and for a torch
    tensor on the ``meta`` device (Keras' symbolic shape inference), under
    ``torch.compile`` or inside a ``torch.func`` transform (``grad``, ``vmap``: wrapped
    tensors without storage).
    """
    if isinstance(x, (np.ndarray, np.generic)):
        return True
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if backend == "torch":
        import torch

        compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
        wrapped = getattr(getattr(torch._C, "_functorch", None),
                          "is_functorch_wrapped_tensor", None)
        return not ((compiling is not None and compiling())
                    or getattr(getattr(x, "device", None), "type", None) == "meta"
                    or (wrapped is not None and isinstance(x, torch.Tensor) and wrapped(x)))
    return True


def check_costs(costs, name="costs", hint=None):
    """Eagerly: a ValueError if ``costs`` has a negative or NaN entry; in graphs: nothing.

    One reduction and one scalar read per call when ``costs`` holds values
    (`holds_values`); the message names the smallest cost and the number of NaNs, and
    ends with ``hint`` (a sentence) when given. ``+inf`` (a blocked cell) passes.
    """
    if isinstance(costs, (np.ndarray, np.generic)):
        if np.all(costs >= 0):
            return
    elif not holds_values(costs):
        return
    elif bool(ops.convert_to_numpy(ops.all(ops.greater_equal(costs, 0)))):
        return
    values = np.asarray(ops.convert_to_numpy(costs), np.float64)
    nan = int(np.count_nonzero(np.isnan(values)))
    found = []
    if np.nanmin(values, initial=np.inf) < 0:
        found.append(f"a minimum of {np.nanmin(values):.6g}")
    if nan:
        found.append(f"{nan} NaN value{'s' if nan > 1 else ''}")
    raise ValueError(
        f"{name} must be non-negative and not NaN (shortest paths are defined for "
        f"non-negative cell costs; +inf marks a blocked cell); received "
        f"{' and '.join(found)}." + ("" if hint is None else f" {hint}")
    )


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

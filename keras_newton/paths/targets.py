"""Targets of shortest-path supervision: the true path, optionally with the true costs.

`PathLoss` needs only the true path; the metrics `OptimalCostMatch` and `CostRatio` also
need the true costs. So that one ``y_true`` serves a loss and all metrics in
``model.fit``, both may be packed into one tensor:

    y_true = pack_path_targets(paths, costs)      # (B, H, W, 2): [..., 0] paths, [..., 1] costs

A plain ``(B, H, W)`` ``y_true`` is the path alone.
"""

import keras
import numpy as np
from keras import ops

__all__ = ["pack_path_targets", "unpack_path_targets"]


def pack_path_targets(paths, costs):
    """Stacks true paths and true costs, both ``(B, H, W)``, into ``(B, H, W, 2)``.

    Two numpy arrays give a numpy array (float32 or wider); tensors give a tensor.
    """
    if isinstance(paths, np.ndarray) and isinstance(costs, np.ndarray):
        _check_pair(paths.shape, costs.shape)
        dtype = np.result_type(paths.dtype, costs.dtype, np.float32)
        return np.stack([paths.astype(dtype), costs.astype(dtype)], axis=-1)
    paths = ops.convert_to_tensor(paths)
    costs = ops.convert_to_tensor(costs)
    _check_pair(tuple(paths.shape), tuple(costs.shape))
    dtypes = {keras.backend.standardize_dtype(t.dtype) for t in (paths, costs)}
    dtype = "float64" if "float64" in dtypes else "float32"
    return ops.stack([ops.cast(paths, dtype), ops.cast(costs, dtype)], axis=-1)


def unpack_path_targets(y_true, name="y_true"):
    """``(paths, costs)`` from a ``(B, H, W)`` path (costs ``None``) or a packed target."""
    y_true = ops.convert_to_tensor(y_true)
    rank = len(y_true.shape)
    if rank == 3:
        return y_true, None
    if rank == 4 and y_true.shape[-1] == 2:
        return y_true[..., 0], y_true[..., 1]
    raise ValueError(
        f"{name} must be the true paths, shape (B, H, W), or paths and costs packed by "
        f"pack_path_targets, shape (B, H, W, 2); received shape {tuple(y_true.shape)}."
    )


def _check_pair(path_shape, cost_shape):
    if len(path_shape) != 3 or tuple(path_shape) != tuple(cost_shape):
        raise ValueError(
            f"paths and costs must both have shape (B, H, W); received {tuple(path_shape)} "
            f"and {tuple(cost_shape)}."
        )

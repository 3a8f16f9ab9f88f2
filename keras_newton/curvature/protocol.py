"""The curvature provider protocol and the per-sample loss of a base loss.

A base loss can tell `NewtonLoss` its own per-sample gradient and Hessian, instead of
having them derived by automatic differentiation. Sampled losses need this: their gradient
and Hessian are *estimates* built from the same samples as the loss value (paper
sections 4.4 and 4.5), so differentiating the loss value would be wrong or impossible.

A provider is any base loss object with a method

    loss_derivatives(y_true, y_pred, hessian) -> LossDerivatives

where ``y_pred`` has shape ``(B, ...)``, flattened per sample to ``(B, m)``:

- ``gradient``: ``(B, m)`` (or the shape of ``y_pred``), ``g_i = d l_i / d y_i``.
- ``hessian``: ``None`` when not asked for (``hessian=False``: the Fisher and identity
  curvatures need only the gradient); otherwise the per-sample Hessians, either dense,
  ``(B, m, m)``, or diagonal, ``(B, m)`` with ``diagonal=True``.

`NewtonLoss` builds the empirical Hessian (Definition 2), the element-wise Hessian
(Definition 1) and the empirical Fisher (Definition 3) from these per-sample quantities.
The closed forms of paper Examples 1-4 are providers too (`closed_form.py`).

Example (a toy provider, a per-sample quartic ``l_i = sum_j (y_ij - t_ij)^4 / 4``):

```python
class Quartic(keras.losses.Loss):
    def call(self, y_true, y_pred):
        return ops.sum((y_pred - y_true) ** 4, axis=-1) / 4

    def loss_derivatives(self, y_true, y_pred, hessian):
        d = y_pred - y_true
        return LossDerivatives(d**3, 3 * d**2 if hessian else None, diagonal=True)

model.compile("adam", loss=NewtonLoss(Quartic(), curvature="hessian", tikhonov=1e-3))
```
"""

import math
from typing import NamedTuple, Optional

import keras
from keras import ops


class LossDerivatives(NamedTuple):
    """Per-sample first and second derivatives of a loss w.r.t. its prediction.

    Attributes:
        gradient: ``(B, m)`` tensor (or ``y_pred``'s shape), ``d l_i / d y_i``.
        hessian: ``None``, a ``(B, m, m)`` tensor, or with ``diagonal=True`` a ``(B, m)``
            tensor holding the diagonal of each per-sample Hessian.
        diagonal: whether ``hessian`` holds diagonals only.

    Example:

    ```python
    def loss_derivatives(self, y_true, y_pred, hessian):   # l_i = sum (y - t)^4 / 4
        d = y_pred - y_true
        return LossDerivatives(d**3, 3 * d**2 if hessian else None, diagonal=True)
    ```
    """

    gradient: object
    hessian: Optional[object] = None
    diagonal: bool = False


def is_provider(loss):
    """Whether ``loss`` supplies its own derivatives (has ``loss_derivatives``)."""
    return callable(getattr(loss, "loss_derivatives", None))


def resolve_base_loss(base_loss):
    """Returns ``(loss_object, per_sample_fn)`` for a Keras Loss, a loss name or a callable.

    ``per_sample_fn(y_true, y_pred)`` returns the per-sample loss ``l_i`` of shape ``(B,)``:
    the loss's *unreduced* output summed over every non-batch axis (docs/conventions.md).
    """
    if isinstance(base_loss, str):
        try:
            obj = keras.losses.get(base_loss)
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"Unknown base_loss name {base_loss!r}: expected a Keras loss name such as "
                "'mse' or 'categorical_crossentropy', a keras.losses.Loss, or a callable "
                "(y_true, y_pred) -> per-sample losses."
            ) from e
    elif isinstance(base_loss, keras.losses.Loss) or callable(base_loss):
        obj = base_loss
    else:
        raise TypeError(
            "base_loss must be a keras.losses.Loss, a Keras loss name or a callable "
            f"(y_true, y_pred) -> per-sample losses; received {type(base_loss).__name__}."
        )
    raw = obj.call if isinstance(obj, keras.losses.Loss) else obj

    def per_sample_fn(y_true, y_pred):
        values = raw(y_true, y_pred)
        return sum_to_per_sample(values, y_pred)

    per_sample_fn.loss_name = (
        type(obj).__name__ if isinstance(obj, keras.losses.Loss)
        else getattr(obj, "__name__", type(obj).__name__))
    return obj, per_sample_fn


def sum_to_per_sample(values, y_pred):
    """Sums a loss's unreduced output over its non-batch axes, checking its shape."""
    values = ops.convert_to_tensor(values)
    rank = len(values.shape)
    if rank == 0:
        raise ValueError(
            "base_loss returned a scalar; expected unreduced per-sample losses of shape "
            f"(B, ...) with B = {y_pred.shape[0]} (a keras.losses.Loss is evaluated through "
            "its `call`; a plain callable must not reduce over the batch)."
        )
    b_loss, b_pred = values.shape[0], y_pred.shape[0]
    if b_loss is not None and b_pred is not None and b_loss != b_pred:
        raise ValueError(
            f"base_loss returned losses of shape {tuple(values.shape)}; expected a leading "
            f"batch axis of size {b_pred} to match y_pred of shape {tuple(y_pred.shape)}."
        )
    if rank > 1:
        values = ops.sum(values, axis=tuple(range(1, rank)))
    return values


def sample_size(x):
    """``m``, the static number of entries of one sample of ``x`` ``(B, ...)``; ``-1`` if a
    non-batch dimension is not static."""
    dims = tuple(x.shape[1:])
    return -1 if any(d is None for d in dims) else int(math.prod(dims))


def flatten_samples(x):
    """``(B, ...)`` to ``(B, m)``, keeping ``m`` static when the batch size is not (and
    working for ``B = 0``, where ``-1`` cannot be inferred)."""
    m = sample_size(x)
    if m >= 0:
        return ops.reshape(x, (-1, m))
    return ops.reshape(x, (ops.shape(x)[0], -1))

"""Keras callbacks: best-validation selection, and exact shortest-path validation metrics.

`BestValidation` is the benchmarks' protocol "evaluate every ``k`` steps, keep the best
weights, test at the best": at the end of every epoch (make an epoch ``k`` steps with
``steps_per_epoch=k``) it scores the model on validation data, adds the scores to the logs
with a ``val_`` prefix, records them (``history``), keeps a copy of the weights whenever the
monitored score improves on the best so far (strictly: the first epoch wins ties; a NaN
never wins) and puts the best weights back at the end of training.

`PathValidation` is a `BestValidation` whose scores are the exact shortest paths of the
predicted costs against the true paths and costs (`keras_newton.metrics.path_metrics`).

Example:

```python
best = keras_newton.callbacks.BestValidation(val_sets, monitor="val_exact_match")
model.fit(train_sets, steps_per_epoch=100, epochs=4, callbacks=[best])
best.best_epoch, best.best  # e.g. 3, 0.82; the model now holds the epoch-3 weights
best.history["val_exact_match"]  # one value per epoch
model.evaluate(test_sets)  # tested at the best validation epoch
```
"""

import math

import keras

from keras_newton.metrics.paths import path_metrics
from keras_newton.paths.targets import unpack_path_targets

__all__ = ["BestValidation", "PathValidation"]

MODES = ("max", "min")


class BestValidation(keras.callbacks.Callback):
    """Validates after every epoch, keeps the best weights and restores them at the end.

    The validation scores of an epoch come from (the first that applies):

    - ``evaluate``: a function ``model -> {name: number}``;
    - ``validation_data``: anything `keras.Model.evaluate` takes as ``x`` (a dataset), or
      a tuple ``(x, y)``; scored with ``model.evaluate(..., return_dict=True)``;
    - neither: the logs of the epoch as they are (Keras' own ``validation_data`` of `fit`,
      or a callback placed before this one).

    Scores from ``evaluate`` or ``validation_data`` are added to the epoch's logs as
    ``val_<name>`` (so later callbacks, `keras.callbacks.History` and tuners see them).

    Args:
        validation_data: validation data for `keras.Model.evaluate`, or ``None``.
        monitor: the log key that selects the best epoch, e.g. ``"val_exact_match"``.
        mode: ``"max"`` (default) or ``"min"``: whether a larger score is better.
        evaluate: ``model -> dict`` of scores, instead of ``validation_data``.
        restore_best_weights: put the best epoch's weights back at the end of training
            (default ``True``). With ``False`` no weights are copied.
        batch_size: batch size of ``model.evaluate`` on arrays (ignored for datasets).

    Attributes:
        epochs: the 1-based epochs validated so far.
        history: ``{log key: [value per validated epoch]}`` of every ``val_`` score.
        best: the best monitored value (``None`` before one that is not NaN).
        best_epoch: its 1-based epoch (``None`` likewise).
        best_weights: the weights at ``best_epoch`` (with ``restore_best_weights``).

    Raises:
        ValueError: for a bad ``mode``, or (while training) when ``monitor`` is not among
            the scores of an epoch.

    Example:

    ```python
    best = keras_newton.callbacks.BestValidation(val_sets, monitor="val_exact_match")
    model.fit(train_sets, steps_per_epoch=100, epochs=4, callbacks=[best])
    model.evaluate(test_sets)  # the weights of epoch best.best_epoch
    ```
    """

    def __init__(self, validation_data=None, monitor="val_loss", mode="max", evaluate=None,
                 restore_best_weights=True, batch_size=None):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; received {mode!r}.")
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be a log key such as 'val_accuracy'; received "
                             f"{monitor!r}.")
        if evaluate is not None and not callable(evaluate):
            raise ValueError(f"evaluate must be a function model -> dict; received "
                             f"{evaluate!r}.")
        self.validation_data = validation_data
        self.monitor = monitor
        self.mode = mode
        self.evaluate = evaluate
        self.restore_best_weights = bool(restore_best_weights)
        self.batch_size = batch_size
        self.epochs = []
        self.history = {}
        self.best = None
        self.best_epoch = None
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.epochs, self.history = [], {}
        self.best = self.best_epoch = self.best_weights = None

    def _scores(self):
        if self.evaluate is not None:
            return self.evaluate(self.model)
        data = self.validation_data
        if isinstance(data, tuple) and len(data) in (2, 3):
            x, y = data[0], data[1]
            sample_weight = data[2] if len(data) == 3 else None
            return self.model.evaluate(x, y, sample_weight=sample_weight,
                                       batch_size=self.batch_size, verbose=0,
                                       return_dict=True)
        return self.model.evaluate(data, batch_size=self.batch_size, verbose=0,
                                   return_dict=True)

    def _improves(self, value):
        if value is None or not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            logs = {}
        if self.evaluate is not None or self.validation_data is not None:
            logs.update({f"val_{k}": float(v) for k, v in self._scores().items()})
        if self.monitor not in logs:
            raise ValueError(f"BestValidation monitors {self.monitor!r}, which is not among "
                             f"the epoch's scores {sorted(logs)}.")
        self.epochs.append(epoch + 1)
        for key, value in logs.items():
            if key.startswith("val_"):
                self.history.setdefault(key, []).append(float(value))
        value = float(logs[self.monitor])
        if self._improves(value):
            self.best, self.best_epoch = value, epoch + 1
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class PathValidation(BestValidation):
    """Exact shortest-path validation: logs ``val_perfect_match``, ``val_optimal_cost``
    (both in percent) and ``val_cost_ratio`` after every epoch, and keeps the best epoch
    on ``monitor`` (default ``val_perfect_match``, maximised).

    After every epoch it predicts the validation costs, solves their exact shortest paths
    and scores them against the true paths and costs (`keras_newton.metrics.path_metrics`).
    Placed before KerasTuner's and Keras' own callbacks, its values reach the History and a
    tuner's objective.

    Args:
        images: validation images.
        targets: ``pack_path_targets(paths, costs)``, ``(N, H, W, 2)``, or a pair
            ``(paths, costs)``.
        batch_size: prediction batch size.
        monitor, mode: as in `BestValidation`.
        restore_best_weights: put the best epoch's weights back at the end of training
            (default ``False``: only the metrics are logged).

    Example:

    ```python
    validation = PathValidation(val_x, (val_paths, val_costs), restore_best_weights=True)
    model.fit(x, paths, epochs=5, callbacks=[validation])
    validation.best_epoch  # the model now holds that epoch's weights
    ```
    """

    def __init__(self, images, targets, batch_size=200, monitor="val_perfect_match",
                 mode="max", restore_best_weights=False):
        from keras import ops

        if isinstance(targets, (tuple, list)) and len(targets) == 2:
            paths, costs = targets
        else:
            paths, costs = unpack_path_targets(targets, name="validation targets")
            if costs is None:
                raise ValueError("validation targets must hold the true costs too: pass "
                                 "pack_path_targets(paths, costs) or (paths, costs).")
            paths, costs = ops.convert_to_numpy(paths), ops.convert_to_numpy(costs)
        self.images, self.paths, self.costs = images, paths, costs
        super().__init__(monitor=monitor, mode=mode, evaluate=self._path_scores,
                         restore_best_weights=restore_best_weights, batch_size=batch_size)

    def _path_scores(self, model):
        pred = model.predict(self.images, batch_size=self.batch_size, verbose=0)
        return path_metrics(pred, self.costs, self.paths)

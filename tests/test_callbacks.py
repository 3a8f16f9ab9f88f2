"""`keras_newton.callbacks.BestValidation` against hand-written score sequences.

A scripted ``evaluate`` returns known scores epoch by epoch, so the best epoch is known
beforehand: the callback must record the curve, pick that epoch (the first on ties, never a
NaN; the smallest with ``mode="min"``), keep that epoch's weights (recorded independently by
a second callback) and leave them in the model after `fit`.
"""

import math

import keras
import numpy as np
import pytest

import keras_newton
from keras_newton.callbacks import BestValidation


class WeightsAtEpochEnd(keras.callbacks.Callback):
    """Records the first kernel after every epoch (placed before BestValidation)."""

    def __init__(self):
        super().__init__()
        self.kernels = []

    def on_epoch_end(self, epoch, logs=None):
        self.kernels.append(np.array(self.model.get_weights()[0]))


def _model_and_data():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    return model, x, x.sum(axis=1, keepdims=True)


def _scripted(scores):
    calls = iter(scores)
    return lambda model: {"score": next(calls), "other": 1.0}


@pytest.mark.parametrize("scores, mode, best_epoch", [
    ([0.2, 0.5, 0.5, 0.4], "max", 2),             # the first of a tie wins
    ([0.2, float("nan"), 0.1, 0.3], "max", 4),    # NaN never wins
    ([float("nan"), 0.1, 0.7, 0.7], "max", 3),
    ([0.9, 0.4, 0.6, 0.4], "min", 2),
    ([0.9, 1.0, 1.1, 1.2], "min", 1),
])
def test_best_epoch_weights_and_curve(scores, mode, best_epoch):
    model, x, y = _model_and_data()
    seen = WeightsAtEpochEnd()
    best = BestValidation(monitor="val_score", mode=mode, evaluate=_scripted(scores))
    history = model.fit(x, y, batch_size=4, epochs=len(scores), verbose=0,
                        callbacks=[seen, best])
    assert best.epochs == [1, 2, 3, 4]
    np.testing.assert_array_equal(best.history["val_score"], scores)
    assert best.history["val_other"] == [1.0] * 4
    # The scores reach the logs, hence Keras' History.
    np.testing.assert_array_equal(history.history["val_score"], scores)
    assert best.best_epoch == best_epoch and best.best == scores[best_epoch - 1]
    # The kernels differ from epoch to epoch, and the model ends at the best epoch's.
    assert not np.allclose(seen.kernels[best_epoch - 1], seen.kernels[-1]) or \
        best_epoch == len(scores)
    np.testing.assert_array_equal(model.get_weights()[0], seen.kernels[best_epoch - 1])


def test_no_restore_keeps_the_last_weights_and_copies_none():
    model, x, y = _model_and_data()
    seen = WeightsAtEpochEnd()
    best = BestValidation(monitor="val_score", evaluate=_scripted([0.9, 0.1, 0.2]),
                          restore_best_weights=False)
    model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[seen, best])
    assert best.best_epoch == 1 and best.best_weights is None
    np.testing.assert_array_equal(model.get_weights()[0], seen.kernels[-1])


def test_all_nan_keeps_the_final_weights():
    model, x, y = _model_and_data()
    seen = WeightsAtEpochEnd()
    best = BestValidation(monitor="val_score", evaluate=_scripted([math.nan] * 2))
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[seen, best])
    assert best.best_epoch is None and best.best is None
    np.testing.assert_array_equal(model.get_weights()[0], seen.kernels[-1])


def test_validation_data_is_scored_with_evaluate():
    """With ``validation_data`` the scores are `model.evaluate`'s, prefixed ``val_``: the
    restored model evaluates to the recorded best loss."""
    model, x, y = _model_and_data()
    best = BestValidation((x[:8], y[:8]), monitor="val_loss", mode="min", batch_size=8)
    model.fit(x[8:], y[8:], batch_size=4, epochs=3, verbose=0, callbacks=[best])
    assert len(best.history["val_loss"]) == 3
    assert best.best == min(best.history["val_loss"])
    assert model.evaluate(x[:8], y[:8], verbose=0) == pytest.approx(best.best, rel=1e-6)


def test_monitor_taken_from_the_logs():
    """Without validation data or ``evaluate``, the monitored value comes from the logs
    (here Keras' own validation)."""
    model, x, y = _model_and_data()
    best = BestValidation(monitor="val_loss", mode="min")
    h = model.fit(x[8:], y[8:], batch_size=4, epochs=3, verbose=0,
                  validation_data=(x[:8], y[:8]), callbacks=[best])
    assert best.history["val_loss"] == pytest.approx(h.history["val_loss"])
    assert best.best_epoch == 1 + int(np.argmin(h.history["val_loss"]))


def test_errors():
    with pytest.raises(ValueError, match="mode must be one of"):
        BestValidation(monitor="val_score", mode="auto")
    with pytest.raises(ValueError, match="evaluate must be a function"):
        BestValidation(monitor="val_score", evaluate=3)
    model, x, y = _model_and_data()
    with pytest.raises(ValueError, match="monitors 'val_acc', which is not among"):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[BestValidation(monitor="val_acc", evaluate=lambda m: {"a": 1})])


def test_public_under_keras_newton():
    assert keras_newton.callbacks.BestValidation is BestValidation
    from keras_newton.models.hypermodels import PathValidation

    assert PathValidation is keras_newton.callbacks.PathValidation
    assert issubclass(PathValidation, BestValidation)

"""Keras metrics: the base loss during Newton training, ranking and path metrics."""

from keras_newton.metrics.base_loss import BaseLoss  # noqa: F401
from keras_newton.metrics.ranking import ElementwiseRankAccuracy  # noqa: F401
from keras_newton.metrics.ranking import ExactMatchAccuracy  # noqa: F401
from keras_newton.metrics.paths import CostRatio  # noqa: F401
from keras_newton.metrics.paths import OptimalCostMatch  # noqa: F401
from keras_newton.metrics.paths import PerfectMatch  # noqa: F401
from keras_newton.metrics.paths import path_metrics  # noqa: F401

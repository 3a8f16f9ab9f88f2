"""Keras metrics: the base loss during Newton training, ranking and path metrics."""

from keras_newton.metrics.base_loss import BaseLoss  # noqa: F401

"""Losses built on the relaxations: ranking, shortest paths, sampled losses.

One import line per loss module.
"""

from keras_newton.losses.paths import PathLoss, hamming_path_loss  # noqa: F401
from keras_newton.losses.ranking import RankingLoss  # noqa: F401
from keras_newton.stochastic import FenchelYoungLoss, StochasticSmoothingLoss  # noqa: F401

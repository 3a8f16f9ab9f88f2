"""Sampled losses: Gaussian stochastic smoothing and perturbed optimizers (Fenchel-Young).

Both estimate their gradient and curvature from the same samples and give them to
`NewtonLoss` through the provider protocol (`keras_newton.curvature.protocol`).
"""

from keras_newton.stochastic.fenchel_young import FenchelYoungLoss  # noqa: F401
from keras_newton.stochastic.smoothing import StochasticSmoothingLoss  # noqa: F401

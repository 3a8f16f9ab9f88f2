"""keras-newton: Newton losses (Petersen et al., NeurIPS 2024) for Keras 3.

`NewtonLoss` takes one Newton step on the loss alone, in output space,
``z* = y - (C + lambda I)^-1 grad l(y)``, and trains the network on
``1/2 ||z* - y||^2`` with ``z*`` held constant.
"""

__version__ = "0.1.0"

from keras_newton import curvature  # noqa: F401
from keras_newton import layers  # noqa: F401
from keras_newton import losses  # noqa: F401
from keras_newton import metrics  # noqa: F401
from keras_newton import tikhonov  # noqa: F401
from keras_newton.newton import NewtonLoss  # noqa: F401

__all__ = ["NewtonLoss", "curvature", "layers", "losses", "metrics", "tikhonov",
           "__version__"]

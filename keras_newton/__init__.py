"""keras-newton: Newton losses (Petersen et al., NeurIPS 2024) for Keras 3.

`NewtonLoss` takes one Newton step on the loss alone, in output space,
``z* = y - (C + lambda I)^-1 grad l(y)``, and trains the network on
``1/2 ||z* - y||^2`` with ``z*`` held constant.

Importing the package imports the whole library (not the ``keras-newton`` application,
`keras_newton.app`), so every Keras object it defines is registered for serialization:
a ``.keras`` file saved with keras-newton objects loads with ``import keras_newton`` and
`keras.saving.load_model`. Conventions (permutation matrices, per-sample losses, grids and
paths, the scale of ``lambda``): docs/conventions.md.
"""

__version__ = "0.1.0"

from keras_newton import callbacks  # noqa: F401
from keras_newton import curvature  # noqa: F401
from keras_newton import datasets  # noqa: F401
from keras_newton import layers  # noqa: F401
from keras_newton import losses  # noqa: F401
from keras_newton import metrics  # noqa: F401
from keras_newton import models  # noqa: F401
from keras_newton import paths  # noqa: F401
from keras_newton import recipes  # noqa: F401
from keras_newton import sorting  # noqa: F401
from keras_newton import stochastic  # noqa: F401
from keras_newton import tikhonov  # noqa: F401
from keras_newton.newton import NewtonLoss  # noqa: F401

__all__ = ["NewtonLoss", "curvature", "datasets", "layers", "losses", "metrics", "models",
           "paths", "recipes", "sorting", "stochastic", "tikhonov", "__version__"]
